"""The report's tables, computed from the runs of a sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnsweep.report.collect import Sweep
from rnnsweep.report.stats import expected_best


def _mean_sd(values: pd.Series) -> tuple[float, float, int]:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return np.nan, np.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else np.nan, int(len(v))


def _count(value: object) -> int:
    """A count logged on the parent; a study still running has none yet."""
    v = pd.to_numeric(value, errors="coerce")
    return 0 if pd.isna(v) else int(v)


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series(dtype=float)


def summary(sweep: Sweep, test_metric: str) -> pd.DataFrame:
    """One row per study: search outcome, re-evaluation mean/sd, cost and trial counts."""
    rows = []
    for _, p in sweep.parents.iterrows():
        re = sweep.reevals[sweep.reevals["tags.mlflow.parentRunId"] == p["run_id"]] \
            if len(sweep.reevals) else pd.DataFrame()
        if len(re):
            re = re[(re["status"] == "FINISHED")
                    & (re["tags.best_trial_number"] == p.get("tags.best_trial_number"))]
        val_m, val_s, n_re = _mean_sd(_column(re, sweep.best_key))
        test_m, test_s, _ = _mean_sd(_column(re, f"metrics.{test_metric}"))
        gap_m, gap_s, _ = _mean_sd(_column(re, "metrics.gap_at_best"))
        sec_m, _, _ = _mean_sd(_column(re, "metrics.seconds_per_epoch"))
        mem_m, _, _ = _mean_sd(_column(re, "metrics.peak_memory_bytes"))
        best = sweep.trials[sweep.trials["run_id"] == p.get("tags.best_trial_run_id")]
        b = best.iloc[0] if len(best) else pd.Series(dtype=object)
        rows.append({
            "cell": p["tags.cell"], "condition": p["condition"], "study": p["tags.study_name"],
            "best_trial_val": p.get(sweep.best_key, np.nan),
            "val_mean": val_m, "val_sd": val_s,
            "test_mean": test_m, "test_sd": test_s,
            "gap_mean": gap_m, "gap_sd": gap_s, "reeval_n": n_re,
            "n_params": b.get("metrics.n_params", np.nan),
            "hidden_size": b.get("metrics.hidden_size_used", np.nan),
            "seconds_per_epoch": sec_m if n_re else b.get("metrics.seconds_per_epoch", np.nan),
            "peak_memory_bytes": mem_m if n_re else b.get("metrics.peak_memory_bytes", np.nan),
            "complete": _count(p.get("metrics.n_complete")),
            "pruned": _count(p.get("metrics.n_pruned")),
            "failed": _count(p.get("metrics.n_failed")),
            "device": p.get("tags.device", ""), "backend": p.get("tags.backend", ""),
        })
    return pd.DataFrame(rows).sort_values(["condition", "cell"]).reset_index(drop=True)


def expected_best_curves(sweep: Sweep) -> pd.DataFrame:
    """Dodge et al. 2019 curve of every study, over its trials' values (pruned included)."""
    rows = []
    for _, p in sweep.parents.iterrows():
        values = sweep.trials.loc[
            sweep.trials["tags.mlflow.parentRunId"] == p["run_id"], "value"].to_numpy(float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        means, sds = expected_best(values, values.size, minimize=sweep.minimize)
        for n, (m, s) in enumerate(zip(means, sds, strict=True), start=1):
            rows.append({"condition": p["condition"], "cell": p["tags.cell"], "n_trials": n,
                         "expected": m, "sd": s})
    return pd.DataFrame(rows, columns=["condition", "cell", "n_trials", "expected", "sd"])


def by_length(sweep: Sweep, axis: str, test_metric: str) -> pd.DataFrame:
    """Re-evaluated test metric per cell, data size and length (for the long-range claim)."""
    col = f"metrics.{test_metric}"
    rows = []
    for _, p in sweep.parents.iterrows():
        re = sweep.reevals[(sweep.reevals["tags.mlflow.parentRunId"] == p["run_id"])
                           & (sweep.reevals["status"] == "FINISHED")]
        m, s, n = _mean_sd(re[col] if col in re else pd.Series(dtype=float))
        rows.append({"cell": p["tags.cell"], "size": p["tags.data_size"],
                     "length": int(p[axis]), "mean": m, "sd": s, "n": n})
    return pd.DataFrame(rows)


def fmt(value: object, digits: int = 4) -> str:
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "n/a"
        return f"{value:.{digits}g}"
    return str(value)


def pm(mean: float, sd: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.4g} ± {sd:.2g}" if np.isfinite(sd) else f"{mean:.4g}"
