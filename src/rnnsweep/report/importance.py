"""Hyperparameter importance per study (fANOVA, as in Greff et al. 2017) from MLflow trials."""

from __future__ import annotations

import math

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


def importances(sweep: Sweep, seed: int) -> pd.DataFrame:
    """One row per (study, hyperparameter); a study with too few trials gets no rows."""
    rows = []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for _, parent in sweep.parents.iterrows():
        trials = sweep.trials[sweep.trials["tags.mlflow.parentRunId"] == parent["run_id"]]
        study = study_from_trials(sweep, trials)
        n = len(study.trials)
        if n < 2:
            continue
        try:
            imp = optuna.importance.get_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=seed), normalize=True)
        except (RuntimeError, ValueError):  # e.g. every trial has the same value
            continue
        for name, value in imp.items():
            rows.append({"study": parent["tags.study_name"], "cell": parent["tags.cell"],
                         "condition": parent["condition"], "parameter": name,
                         "importance": float(value), "n_trials": n})
    return pd.DataFrame(rows, columns=["study", "cell", "condition", "parameter", "importance",
                                       "n_trials"])
