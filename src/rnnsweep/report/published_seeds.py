"""What a paper-profile sweep measured, read from its runs for "Published vs measured"
(report/published.py): the seeds of each cell and condition, their values, the sequences a
seed trained on before it solved the task, and the studies still improving at the end of
their budget."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from rnnsweep.report import diagnostics
from rnnsweep.report.collect import Sweep, config_of
from rnnsweep.report.tables import fmt

SOLVED_ACC = 0.95


def fixed_space(space: dict[str, dict]) -> bool:
    """Every parameter takes one value: trials differ only by their seed."""
    def one(p: dict) -> bool:
        if p.get("type") == "categorical":
            return len(p.get("choices") or []) == 1
        return p.get("low") is not None and float(p["low"]) == float(p["high"])
    return bool(space) and all(one(p) for p in space.values())


def seed_runs(sweep: Sweep) -> pd.DataFrame:
    """Finished runs that measure a study's chosen configuration, one per seed."""
    parts = [sweep.reevals]
    if fixed_space(sweep.space) and len(sweep.trials):
        parts.append(sweep.trials[sweep.trials.get("tags.state") == "COMPLETE"])
    runs = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(
        len(p) for p in parts) else pd.DataFrame(columns=["status", "tags.cell", "condition"])
    return runs[runs["status"] == "FINISHED"].reset_index(drop=True)


def runs_of(runs: pd.DataFrame, cell: str, condition: str) -> pd.DataFrame:
    """The runs of one cell in one condition."""
    return runs[(runs["tags.cell"] == cell) & (runs["condition"] == condition)]


def values(runs: pd.DataFrame, cell: str, condition: str, metric: str) -> np.ndarray:
    """One cell's finite values of `metric` in one condition, one per run."""
    col = f"metrics.{metric}"
    if col not in runs.columns:
        return np.array([])
    v = pd.to_numeric(runs_of(runs, cell, condition)[col], errors="coerce")
    v = v.to_numpy(dtype=float)
    return v[np.isfinite(v)]


def ours(v: np.ndarray) -> str:
    """'mean ± sd (n=k: each value)', or n/a."""
    if not v.size:
        return "n/a"
    sd = f" ± {np.std(v, ddof=1):.3g}" if v.size > 1 else ""
    return f"{np.mean(v):.4g}{sd} (n={v.size}: {', '.join(fmt(float(x), 4) for x in v)})"


def length_of(condition: str) -> str | None:
    """The T= or seq_len= of a condition's label, or None."""
    for part in condition.split():
        if part.startswith(("T=", "seq_len=")):
            return part.split("=", 1)[1]
    return None


def condition_lengths(sweep: Sweep) -> dict[str, str]:
    """condition -> sequence length: from its label (several lengths) or the studies' data.T
    tag (one length, which the label then leaves out)."""
    out = {}
    for _, p in sweep.parents.iterrows():
        tag = next((p.get(k) for k in ("tags.data.T", "tags.data.seq_len")
                    if isinstance(p.get(k), str)), None)
        length = length_of(p["condition"]) or tag
        if length is not None:
            out[p["condition"]] = str(length)
    return out


def sequences_to_solve(runs: pd.DataFrame, batch_size: int | None) -> np.ndarray:
    """Per run: first validation step with val_acc >= SOLVED_ACC, times the batch size."""
    if batch_size is None or not len(runs):
        return np.array([])
    client = MlflowClient()
    out = []
    for run_id in runs["run_id"]:
        hist = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val_acc"))
        step = next((s for s, v in hist if v >= SOLVED_ACC), None)
        out.append(math.nan if step is None else float(step * batch_size))
    return np.array(out, dtype=float)


def batch_size(sweep: Sweep) -> int | None:
    """data.batch_size of the sweep's stored config (None for a run without one)."""
    try:
        return int(config_of(MlflowClient(), sweep.parents["run_id"].iloc[0])["data"]["batch_size"])
    except Exception:  # noqa: BLE001 (an old or foreign run: the column says n/a)
        return None


def unconverged(sweep: Sweep) -> set[tuple[str, str]]:
    """(cell, condition) of the studies whose best trial was still improving at the end of its
    step budget (diagnostics.converged): there the budget, not the cell, may decide."""
    return {(str(p.get("tags.cell")), str(p["condition"])) for _, p in sweep.parents.iterrows()
            if diagnostics.converged(sweep, p) is False}
