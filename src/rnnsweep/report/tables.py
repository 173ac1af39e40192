"""The report's tables, computed from the runs of a sweep."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from rnnsweep.data.fitted_baselines import fitted_keys
from rnnsweep.report import diagnostics
from rnnsweep.report.bookkeeping import (
    current_reevals,
    repeat_numbers,
    search_groups,
    seed_counts,
)
from rnnsweep.report.collect import Sweep
from rnnsweep.report.stats import expected_best

# Trials that ended by themselves: failed and still-running trials are no draws of the search.
DRAWN_STATES = ("COMPLETE", "PRUNED")


def _mean_sd(values: pd.Series) -> tuple[float, float, int]:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.mean()), float(v.std()), len(v)  # nan for no value, sd nan for one


def _count(value: object) -> int:
    """A count logged on the parent; a study still running has none yet."""
    v = pd.to_numeric(value, errors="coerce")
    return 0 if pd.isna(v) else int(v)


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series(dtype=float)


def _searches(sweep: Sweep) -> list[pd.DataFrame]:
    """The sweep's parents, one frame per search: a study, or the independent repeats of one
    search (search.repeats) together, in repeat order."""
    if sweep.parents.empty:
        return []
    ps = sweep.parents.assign(_group=search_groups(sweep.parents),
                              _repeat=repeat_numbers(sweep.parents))
    return [g.sort_values("_repeat").drop(columns=["_group", "_repeat"])
            for _, g in ps.groupby("_group", sort=False)]


def _best_of(sweep: Sweep, studies: pd.DataFrame) -> pd.Series:
    """The study with the best selection statistic (its best trial's validation value)."""
    if len(studies) == 1:
        return studies.iloc[0]
    v = pd.to_numeric(_column(studies, sweep.best_key), errors="coerce")
    if v.isna().all():
        return studies.iloc[0]
    return studies.loc[v.idxmin() if sweep.minimize else v.idxmax()]


def _converged_all(values: list[bool | None]) -> bool | None:
    """Not converged when any repeat's best trial is not; unknown when one is unknown."""
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def summary(sweep: Sweep, test_metric: str) -> pd.DataFrame:
    """One row per search: re-evaluation test figures (the headline), the trivial predictor
    (validation set) and the fitted baselines (test set), the search's selection statistic,
    gaps, convergence, trainability, cost and trial and seed counts.

    A search run as k independent repeats (search.repeats) is one row, as the claims see it:
    seeds pooled over every repeat's best configuration, trials and seeds summed (column
    `searches`: k), the best repeat's best trial (selection statistic, size, cost), converged
    only when every repeat's best trial converged; each repeat's own optimum is in
    tuned_optima."""
    current = current_reevals(sweep.parents, sweep.reevals)
    rows = []
    for studies in _searches(sweep):
        ids = list(studies["run_id"])
        re = current[(current["tags.mlflow.parentRunId"].isin(ids)) & current["ok"]] \
            if len(current) else pd.DataFrame()
        counts = [seed_counts(current, i) for i in ids]
        n_ok, n_bad = sum(c[0] for c in counts), sum(c[1] for c in counts)
        reasons = [r for c in counts for r in c[2]]
        p = _best_of(sweep, studies)
        val_m, val_s, _ = _mean_sd(_column(re, sweep.best_key))
        test_m, test_s, _ = _mean_sd(_column(re, f"metrics.{test_metric}"))
        acc_m, acc_s, _ = _mean_sd(_column(re, "metrics.test_acc"))
        gap_m, gap_s, _ = _mean_sd(_column(re, "metrics.gap_at_best"))
        rise_m, rise_s, _ = _mean_sd(_column(re, "metrics.val_rise"))
        step_m, _, _ = _mean_sd(_column(re, "metrics.seconds_per_step"))
        sec_m, _, _ = _mean_sd(_column(re, "metrics.seconds_per_epoch"))
        mem_m, _, _ = _mean_sd(_column(re, "metrics.peak_memory_bytes"))
        b = diagnostics.best_trial(sweep, p)
        b = b if b is not None else pd.Series(dtype=object)
        trains = [diagnostics.trainability(sweep, s) for _, s in studies.iterrows()]
        near = [x["near_best"] for x in trains if x["near_best"] is not None]
        diverged = [x["diverged"] for x in trains if x["diverged"] is not None]
        convs = [(s, diagnostics.converged(sweep, s)) for _, s in studies.iterrows()]
        conv = _converged_all([c for _, c in convs])
        late = next((s for s, c in convs if c is False), p)
        late_trial = diagnostics.best_trial(sweep, late)
        sampler_done = pd.to_numeric(_column(studies, "metrics.n_sampler_complete"),
                                     errors="coerce")
        rows.append({
            "cell": p["tags.cell"], "condition": p["condition"],
            "study": p["tags.study_name"] if len(studies) == 1
            else ", ".join(str(s) for s in studies["tags.study_name"]),
            "searches": len(studies),
            "sampler": p.get("tags.search_sampler", np.nan),
            "test_mean": test_m, "test_sd": test_s,
            "test_acc_mean": acc_m, "test_acc_sd": acc_s,
            "baseline_loss": p.get("metrics.baseline_loss", np.nan),
            "baseline_acc": p.get("metrics.baseline_acc", np.nan),
            # Fitted non-recurrent baselines, test set (fitted_<model>_<test metric>).
            **{k: pd.to_numeric(p.get(f"metrics.{k}", np.nan), errors="coerce")
               for k in fitted_keys()},
            "best_trial_val": p.get(sweep.best_key, np.nan),
            "val_mean": val_m, "val_sd": val_s,
            "gap_eval_mean": gap_m, "gap_eval_sd": gap_s,
            "val_rise_mean": rise_m, "val_rise_sd": rise_s,
            "reeval_n": n_ok, "reeval_failed": n_bad,
            "reeval_fail_reasons": "; ".join(sorted(set(reasons))),
            "converged": conv,
            # The key to raise when not converged: trainer.max_steps or trainer.max_epochs.
            "converged_hint": diagnostics.not_converged_hint(
                late_trial if late_trial is not None else b),
            "near_best_share": float(np.mean(near)) if near else None,
            "diverged_share": float(np.mean(diverged)) if diverged else None,
            "n_params": b.get("metrics.n_params", np.nan),
            "hidden_size": b.get("metrics.hidden_size_used", np.nan),
            "seconds_per_step": step_m if n_ok else b.get("metrics.seconds_per_step", np.nan),
            "seconds_per_epoch": sec_m if n_ok else b.get("metrics.seconds_per_epoch", np.nan),
            "peak_memory_bytes": mem_m if n_ok else b.get("metrics.peak_memory_bytes", np.nan),
            "complete": sum(_count(v) for v in _column(studies, "metrics.n_complete")),
            # NaN for a study recorded before the count existed: unknown, not 0.
            "sampler_complete": sampler_done.sum(min_count=len(studies))
            if len(sampler_done) else np.nan,
            "pruned": sum(_count(v) for v in _column(studies, "metrics.n_pruned")),
            "failed": sum(_count(v) for v in _column(studies, "metrics.n_failed")),
            "device": p.get("tags.device", ""), "backend": p.get("tags.backend", ""),
        })
    return pd.DataFrame(rows).sort_values(["condition", "cell"]).reset_index(drop=True)


def expected_best_curves(sweep: Sweep) -> pd.DataFrame:
    """Dodge et al. 2019 curve of every study over its COMPLETE and PRUNED trials (pruned
    ones with their best value before pruning). The estimator assumes i.i.d. draws: valid for
    random search (control = True), indicative only for a guided sampler such as TPE. The
    independent repeats of a search (search.repeats) are one curve over all their trials:
    more draws of the same search."""
    cols = ["condition", "cell", "sampler", "control", "n_trials", "expected", "sd"]
    rows = []
    for studies in _searches(sweep):
        p = studies.iloc[0]
        trials = sweep.trials[sweep.trials["tags.mlflow.parentRunId"].isin(studies["run_id"])] \
            if len(sweep.trials) else sweep.trials
        if "tags.state" in trials:
            trials = trials[trials["tags.state"].isin(DRAWN_STATES)]
        values = trials["value"].to_numpy(float) if "value" in trials else np.array([])
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        sampler = p.get("tags.search_sampler")
        sampler = sampler if isinstance(sampler, str) else "not recorded"
        means, sds = expected_best(values, values.size, minimize=sweep.minimize)
        for n, (m, s) in enumerate(zip(means, sds, strict=True), start=1):
            rows.append({"condition": p["condition"], "cell": p["tags.cell"],
                         "sampler": sampler, "control": sampler == "random", "n_trials": n,
                         "expected": m, "sd": s})
    return pd.DataFrame(rows, columns=cols)


def by_length(sweep: Sweep, axis: str, test_metric: str) -> pd.DataFrame:
    """Re-evaluated test metric per cell, data size and length (for the long-range claim)."""
    col = f"metrics.{test_metric}"
    current = current_reevals(sweep.parents, sweep.reevals)
    rows = []
    for _, p in sweep.parents.iterrows():
        re = current[(current["tags.mlflow.parentRunId"] == p["run_id"]) & current["ok"]] \
            if len(current) else pd.DataFrame()
        m, s, n = _mean_sd(_column(re, col))
        rows.append({"cell": p["tags.cell"], "size": p["tags.data_size"],
                     "length": int(p[axis]), "mean": m, "sd": s, "n": n})
    return pd.DataFrame(rows)


def fmt(value: object, digits: int = 4) -> str:
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "n/a"
        return f"{value:.{digits}g}"
    return str(value)


def pm(means: Iterable[float], sds: Iterable[float]) -> list[str]:
    """'mean ± sd' per pair of a column of means and one of sds ('n/a' for no mean)."""
    return ["n/a" if not np.isfinite(m) else f"{m:.4g} ± {d:.2g}" if np.isfinite(d)
            else f"{m:.4g}" for m, d in zip(means, sds, strict=True)]


def _compact(value: object) -> str:
    """A tag's hyperparameter value, short: 24, 0.00312, adam."""
    try:
        number = float(str(value))
    except ValueError:
        return str(value)
    text = str(value)
    return str(int(number)) if number.is_integer() and "." not in text else f"{number:.3g}"


def tuned_optima(sweep: Sweep, test_metric: str) -> pd.DataFrame:
    """One row per study of every search run as two or more independent repeats
    (search.repeats): its repeat, best trial's validation value (the search's selection
    statistic), the re-evaluation seeds of its best configuration on the test metric (mean,
    sd, n) and the hyperparameters it chose (tags best.<name>). Empty when every search is
    one study, so a sweep without repeats reports as before."""
    cols = ["condition", "cell", "sampler", "searches", "repeat", "study", "best_val",
            "test_mean", "test_sd", "n", "params"]
    current = current_reevals(sweep.parents, sweep.reevals)
    col = f"metrics.{test_metric}"
    rows = []
    for studies in _searches(sweep):
        if len(studies) < 2:
            continue
        for (_, p), repeat in zip(studies.iterrows(), repeat_numbers(studies), strict=True):
            re = current[(current["tags.mlflow.parentRunId"] == p["run_id"]) & current["ok"]] \
                if len(current) else pd.DataFrame()
            m, s, n = _mean_sd(_column(re, col))
            params = {name: p.get(f"tags.best.{name}") for name in sweep.space}
            rows.append({
                "condition": p["condition"], "cell": p["tags.cell"],
                "sampler": p.get("tags.search_sampler", np.nan), "searches": len(studies),
                "repeat": int(repeat), "study": p.get("tags.study_name", p["run_id"]),
                "best_val": pd.to_numeric(p.get(sweep.best_key, np.nan), errors="coerce"),
                "test_mean": m, "test_sd": s, "n": n,
                "params": " ".join(f"{k}={_compact(v)}" for k, v in params.items()
                                   if isinstance(v, str)),
            })
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame(rows, columns=cols).sort_values(["condition", "cell", "sampler",
                                                         "repeat"]).reset_index(drop=True)
