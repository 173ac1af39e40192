"""The numbers the claims and the bottom line stand on, read once per sweep.

One search per cell and condition (bookkeeping.primary_parents), and only the finished
re-evaluations of its current best configuration; failed seeds are counted alongside. A
search run as several independent repeats (search.repeats) is several studies: a cell's
values pool the re-evaluation seeds of every repeat's best configuration, so their spread
covers the tuning (which configuration a search picks) as well as the seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnsweep.report.bookkeeping import current_reevals, finite, primary_parents, seed_counts
from rnnsweep.report.collect import Sweep

# A re-evaluation run's seed (search/reeval.py tags it); seed k of every cell and size of a
# sweep draws the same data, so equal seeds pair.
SEED_COLUMN = "tags.reeval_seed"


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

    def studies(self, cell: str, condition: str) -> pd.DataFrame:
        """The cell's studies of the condition: one, or one per independent repeat of its
        search (search.repeats), in repeat order."""
        return self.parents[(self.parents["tags.cell"] == cell)
                            & (self.parents["condition"] == condition)]

    def values(self, cell: str, condition: str, column: str) -> list[float]:
        """Finite values of `column` over the finished seeds of the current best of each of
        the cell's studies of the condition (every repeat's; study by study)."""
        ids = list(self.studies(cell, condition)["run_id"])
        if not ids or self.reevals.empty or column not in self.reevals.columns:
            return []
        out: list[float] = []
        for run_id in ids:
            rows = self.reevals[(self.reevals["tags.mlflow.parentRunId"] == run_id)
                                & self.reevals["ok"]]
            v = pd.to_numeric(rows[column], errors="coerce").to_numpy(float)
            out += v[np.isfinite(v)].tolist()
        return out

    def keyed(self, cell: str, condition: str, column: str) -> dict[tuple[str, str], float]:
        """values() keyed by (search repeat, re-evaluation seed); {} where runs carry no
        seed tag. Seed k of every cell and size shares k's data draw and shuffling order
        (data.base.draw_seed), so equal keys form a matched pair."""
        if self.reevals.empty or column not in self.reevals.columns \
                or SEED_COLUMN not in self.reevals.columns:
            return {}
        out: dict[tuple[str, str], float] = {}
        for _, study in self.studies(cell, condition).iterrows():
            rows = self.reevals[(self.reevals["tags.mlflow.parentRunId"] == study["run_id"])
                                & self.reevals["ok"]]
            repeat = str(study.get("tags.search_repeat") or "0")
            for seed, value in zip(rows[SEED_COLUMN], pd.to_numeric(
                    rows[column], errors="coerce"), strict=True):
                if pd.notna(seed) and np.isfinite(value):
                    out[(repeat, str(seed))] = float(value)
        return out

    def paired(self, cells: tuple[str, str], condition: str, column: str,
               keep: set[tuple[str, str]] | None = None,
               ) -> tuple[list[float], list[float], int] | None:
        """The two cells' values on the seeds both finished (and in `keep`, when given), in
        seed order, and how many of either cell's seeds had no partner (left out); None with
        fewer than two such seeds, where the comparison falls back to the unpaired one."""
        a, b = (self.keyed(c, condition, column) for c in cells)
        common = sorted(set(a) & set(b) & (set(a) if keep is None else keep),
                        key=lambda k: (k[0], int(float(k[1]))))
        if len(common) < 2:
            return None
        unmatched = len(set(a) ^ set(b))
        return [a[k] for k in common], [b[k] for k in common], unmatched

    def seeds(self, cell: str, condition: str) -> tuple[int, int, list[str]]:
        """(finished, failed or killed, reasons) re-evaluation seeds of the current best,
        summed over the cell's studies of the condition."""
        done, bad, reasons = 0, 0, []
        for run_id in self.studies(cell, condition)["run_id"]:
            d, b, r = seed_counts(self.reevals, run_id)
            done, bad, reasons = done + d, bad + b, reasons + r
        return done, bad, reasons

    def repeats(self) -> int:
        """The most independent searches any cell has in any condition."""
        ps = self.parents
        return 0 if ps.empty else int(ps.groupby(["tags.cell", "condition"]).size().max())

    def pooled_text(self) -> str:
        """'' with one search per cell and condition; else what a cell's seeds pool."""
        k = self.repeats()
        return "" if k <= 1 else (f"; each cell's seeds pool the best configurations of up to "
                                  f"{k} independent searches (search.repeats), so the spread "
                                  "includes the tuning's")

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
