"""The numbers the claims and the bottom line stand on, read once per sweep.

One study per cell and condition (bookkeeping.primary_parents), and only the finished
re-evaluations of its current best configuration; failed seeds are counted alongside.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnsweep.report.bookkeeping import current_reevals, finite, primary_parents, seed_counts
from rnnsweep.report.collect import Sweep


class Evidence:
    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep
        self.parents = primary_parents(sweep.parents)
        self.reevals = current_reevals(self.parents, sweep.reevals)

    def conditions(self) -> list[str]:
        return sorted(set(self.parents["condition"])) if len(self.parents) else []

    def cells(self, condition: str | None = None) -> list[str]:
        ps = self.parents if condition is None else \
            self.parents[self.parents["condition"] == condition]
        return sorted(set(ps["tags.cell"])) if len(ps) else []

    def parent(self, cell: str, condition: str) -> pd.Series | None:
        rows = self.parents[(self.parents["tags.cell"] == cell)
                            & (self.parents["condition"] == condition)]
        return rows.iloc[0] if len(rows) else None

    def values(self, cell: str, condition: str, column: str) -> list[float]:
        """Finite values of `column` over the finished seeds of the study's current best."""
        p = self.parent(cell, condition)
        if p is None or self.reevals.empty or column not in self.reevals.columns:
            return []
        rows = self.reevals[(self.reevals["tags.mlflow.parentRunId"] == p["run_id"])
                            & self.reevals["ok"]]
        v = pd.to_numeric(rows[column], errors="coerce").to_numpy(float)
        return v[np.isfinite(v)].tolist()

    def seeds(self, cell: str, condition: str) -> tuple[int, int, list[str]]:
        """(finished, failed or killed, reasons) re-evaluation seeds of the current best."""
        p = self.parent(cell, condition)
        return (0, 0, []) if p is None else seed_counts(self.reevals, p["run_id"])

    def failed_text(self, cells: list[str], condition: str) -> str:
        """'' or '; failed seeds left out: lstm 1 (NaN loss)' — never dropped silently."""
        parts = []
        for cell in cells:
            _, bad, reasons = self.seeds(cell, condition)
            if bad:
                why = f" ({'; '.join(sorted(set(reasons)))})" if reasons else ""
                parts.append(f"{cell} {bad}{why}")
        return f"; failed seeds left out: {', '.join(parts)}" if parts else ""

    def baseline(self, condition: str, key: str = "baseline_loss") -> float | None:
        """The trivial predictor's value (metrics.<key>) of a condition, if recorded."""
        col = f"metrics.{key}"
        ps = self.parents[self.parents["condition"] == condition]
        if col not in ps.columns:
            return None
        v = pd.to_numeric(ps[col], errors="coerce").dropna()
        return finite(v.mean()) if len(v) else None

    def parent_value(self, cell: str, condition: str, key: str) -> object:
        p = self.parent(cell, condition)
        return None if p is None else p.get(key)
