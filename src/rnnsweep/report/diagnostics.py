"""What the budget and the sample allow: convergence of the best trial and trainability.

- converged: the best trial's validation curve had flattened before the end of its budget:
  its best came before the last 10 % of the steps, or the last 10 % gained less than 1 % of
  the run's whole improvement (first validation to best). The position alone flags every run
  whose learning rate decays to zero at the end (cosine), where the best falls late by
  construction; otherwise the budget, not the cell, may have decided (raise
  trainer.max_steps).
- trainability (Collins et al. 2017): the share of a study's trials within 10 % of its best
  value, and the share that diverged (failed with a non-finite loss).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnnsweep.report.bookkeeping import finite, is_diverged
from rnnsweep.report.collect import Sweep

LATE_FRACTION = 0.1     # the last 10 % of the budget ...
LATE_GAIN = 0.01        # ... may still gain under 1 % of the run's whole improvement
NEAR_BEST = 0.1         # within 10 % of the study's best value
ENDED = ("COMPLETE", "PRUNED", "FAIL")


def not_converged_hint(parent_or_trial: pd.Series | None) -> str:
    """Names the key to raise: the budget is counted in steps or in epochs (budget_unit)."""
    unit = None if parent_or_trial is None else parent_or_trial.get("params.budget_unit")
    key = "trainer.max_epochs" if unit == "epochs" else "trainer.max_steps"
    return f"not converged: raise {key}"


def study_trials(sweep: Sweep, parent_run_id: str) -> pd.DataFrame:
    t = sweep.trials
    if t.empty or "tags.mlflow.parentRunId" not in t:
        return t
    return t[t["tags.mlflow.parentRunId"] == parent_run_id]


def best_trial(sweep: Sweep, parent: pd.Series) -> pd.Series | None:
    trials = study_trials(sweep, parent["run_id"])
    run_id = parent.get("tags.best_trial_run_id")
    if trials.empty or not isinstance(run_id, str):
        return None
    rows = trials[trials["run_id"] == run_id]
    return rows.iloc[0] if len(rows) else None


def converged(sweep: Sweep, parent: pd.Series) -> bool | None:
    """None when best_step or budget_steps is not recorded."""
    best = best_trial(sweep, parent)
    step = finite(best.get("metrics.best_step")) if best is not None else None
    budget = None
    for source in (best, parent):
        if source is not None and budget is None:
            budget = finite(source.get("params.budget_steps"))
    if step is None or budget is None or budget <= 0:
        return None
    cutoff = (1 - LATE_FRACTION) * budget
    if step < cutoff:
        return True
    curve = [(s, v) for s, v in sweep.curves.get(best["run_id"], {}).get(sweep.metric, [])
             if math.isfinite(v)]
    return late_gain(curve, cutoff, sweep.minimize) < LATE_GAIN if curve else False


def late_gain(curve: list[tuple[int, float]], cutoff: float, minimize: bool) -> float:
    """The share of a validation curve's whole improvement (first value to best) won at steps
    >= cutoff; 1.0 when nothing came before the cutoff or the curve never improved."""
    sign = 1.0 if minimize else -1.0
    values = [sign * v for _, v in curve]
    before = [sign * v for s, v in curve if s < cutoff]
    total = values[0] - min(values)
    if not before or total <= 0:
        return 1.0
    return (min(before) - min(values)) / total


def trainability(sweep: Sweep, parent: pd.Series) -> dict[str, float | int | None]:
    """near_best and diverged shares over the study's ended trials (complete, pruned, failed);
    pruned trials count with their best value before pruning."""
    trials = study_trials(sweep, parent["run_id"])
    state = trials["tags.state"] if "tags.state" in trials else pd.Series(dtype=object)
    ended = trials[state.isin(ENDED)] if len(trials) else trials
    n = int(len(ended))
    if n == 0:
        return {"near_best": None, "diverged": None, "n_trials": 0}
    values = pd.to_numeric(ended.get("value"), errors="coerce").to_numpy(float) \
        if "value" in ended else np.full(n, np.nan)
    ok = np.isfinite(values)
    near = None
    if ok.any():
        best = values[ok].min() if sweep.minimize else values[ok].max()
        tol = NEAR_BEST * abs(best)
        close = values[ok] <= best + tol if sweep.minimize else values[ok] >= best - tol
        near = float(close.sum() / n)
    reasons = ended["tags.fail_reason"] if "tags.fail_reason" in ended else \
        pd.Series([None] * n, index=ended.index)
    diverged = sum(1 for s, r in zip(ended["tags.state"], reasons, strict=True)
                   if s == "FAIL" and is_diverged(r))
    return {"near_best": near, "diverged": float(diverged / n), "n_trials": n}
