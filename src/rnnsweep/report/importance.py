"""Hyperparameter importance per study (fANOVA, as in Greff et al. 2017) from MLflow trials."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.importance import FanovaImportanceEvaluator

from rnnsweep.report.collect import Sweep


def distributions(space: dict[str, dict]) -> dict[str, BaseDistribution]:
    out: dict[str, BaseDistribution] = {}
    for name, p in space.items():
        if p["type"] == "int":
            step = int(p.get("step") or 1)
            out[name] = IntDistribution(int(p["low"]), int(p["high"]), log=bool(p.get("log")),
                                        step=step)
        elif p["type"] == "float":
            out[name] = FloatDistribution(float(p["low"]), float(p["high"]),
                                          log=bool(p.get("log")), step=p.get("step"))
        else:
            out[name] = CategoricalDistribution(list(p["choices"]))
    return out


def _cast(value: str, dist: BaseDistribution) -> object:
    if isinstance(dist, IntDistribution):
        return int(value)
    if isinstance(dist, FloatDistribution):
        return float(value)
    return next(c for c in dist.choices if str(c) == str(value))


def study_from_trials(sweep: Sweep, trials: pd.DataFrame) -> optuna.Study:
    """An in-memory study holding the complete trials, rebuilt from their MLflow params."""
    dists = distributions(sweep.space)
    study = optuna.create_study(direction=sweep.direction)
    for _, t in trials.iterrows():
        if t.get("tags.state") != "COMPLETE" or not math.isfinite(t["value"]):
            continue
        params = {k: _cast(t[f"params.{k}"], d) for k, d in dists.items()
                  if isinstance(t.get(f"params.{k}"), str)}
        if len(params) != len(dists):
            continue
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, value=float(t["value"])))
    return study


MIN_TRIALS = 10  # below this, fANOVA importances are printed with a warning
# Below this a bootstrap of the trials has almost no distinct resamples to offer (3 trials:
# 10), so its spread would be noise dressed as an interval: none is computed.
MIN_BOOTSTRAP_TRIALS = 5


def _fanova(study: optuna.Study, seed: int) -> dict[str, float] | None:
    try:
        return dict(optuna.importance.get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=seed), normalize=True))
    except (RuntimeError, ValueError, ZeroDivisionError):  # e.g. every trial has one value
        return None


def _resampled(study: optuna.Study, rng: np.random.Generator) -> optuna.Study:
    """The same study with its complete trials drawn with replacement (a bootstrap replicate)."""
    trials = study.trials
    copy = optuna.create_study(direction=study.direction)
    copy.add_trials([trials[i] for i in rng.integers(0, len(trials), len(trials))])
    return copy


def importances(sweep: Sweep, seed: int, n_boot: int = 20) -> pd.DataFrame:
    """One row per (study, hyperparameter): fANOVA importance and its bootstrap spread over
    n_boot resamples of the complete trials (sd, 5th-95th percentile; none below
    MIN_BOOTSTRAP_TRIALS). A study with fewer than 2 complete trials gets no rows; one with
    fewer than MIN_TRIALS is flagged `few_trials`."""
    cols = ["study", "cell", "condition", "parameter", "importance", "boot_sd", "boot_low",
            "boot_high", "n_trials", "few_trials"]
    rows = []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    for _, parent in sweep.parents.iterrows():
        trials = sweep.trials[sweep.trials["tags.mlflow.parentRunId"] == parent["run_id"]] \
            if len(sweep.trials) else sweep.trials
        study = study_from_trials(sweep, trials)
        n = len(study.trials)
        if n < 2:
            continue
        imp = _fanova(study, seed)
        if imp is None:
            continue
        boots = [b for _ in range(n_boot if n >= MIN_BOOTSTRAP_TRIALS else 0)
                 if (b := _fanova(_resampled(study, rng), seed))]
        for name, value in imp.items():
            draws = np.array([b.get(name, 0.0) for b in boots])
            rows.append({"study": parent["tags.study_name"], "cell": parent["tags.cell"],
                         "condition": parent["condition"], "parameter": name,
                         "importance": float(value),
                         "boot_sd": float(draws.std(ddof=1)) if draws.size > 1 else np.nan,
                         "boot_low": float(np.percentile(draws, 5)) if draws.size else np.nan,
                         "boot_high": float(np.percentile(draws, 95)) if draws.size else np.nan,
                         "n_trials": n, "few_trials": n < MIN_TRIALS})
    return pd.DataFrame(rows, columns=cols)
