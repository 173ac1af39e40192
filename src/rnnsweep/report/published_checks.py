"""The checks behind the verdicts of "Published vs measured" (report/published.py).

- Direction rows (`above:` / `below:`): one one-sided Welch test per distinct comparison
  (higher cell, lower cell, condition, metric). A comparison stated by two rows (the LSTM's
  row "above gru" and the GRU's row "below lstm") is one hypothesis and counts once. Holm's
  step-down correction (Holm 1979) runs across all comparisons of one paper's rows, so a
  paper with many rows cannot reproduce one of them by chance at the nominal 0.05.
- Importance rows (`rank:`): fANOVA ranks are read only from a study whose runs trained:
  its best value closes at least TRAINED_SHARE of the gap between the trivial predictor
  (baseline_loss, or baseline_acc for an accuracy objective, on the study's parent run) and
  a perfect score (loss 0, accuracy 1). Runs that end near the trivial loss rank their
  hyperparameters by noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from rnnsweep.report.bookkeeping import finite
from rnnsweep.report.collect import Sweep
from rnnsweep.report.sequential import seeds_to_decide
from rnnsweep.report.stats import contrast, holm_levels

REPRODUCED, NOT_REPRODUCED, NOT_MEASURED = ("reproduced in direction", "not reproduced",
                                            "not measured")
NOT_SIGNIFICANT = "same direction, not significant"
ALPHA = 0.05  # family-wise, one-sided, across the comparisons of one paper's rows (Holm)
# A study "trains" when its best value closes at least this share of the gap between the
# trivial predictor and a perfect score: for a loss, best <= 0.9 x the trivial loss.
TRAINED_SHARE = 0.10
# Planning seeds for a direction row: power to detect a gap as large as the published one.
POWER, MAX_PLANNED_SEEDS = 0.8, 50


def one_sided_p(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's one-sided p that mean(a) > mean(b); nan below 2 values each or no spread."""
    if a.size < 2 or b.size < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)


@dataclass
class Comparison:
    """One cell expected above another (hi, lo) in one condition, over seeds."""

    key: tuple[str, str, str, str]  # (higher cell, lower cell, condition, metric)
    hi: np.ndarray
    lo: np.ndarray
    welch_p: float = field(init=False)
    # The p that enters the Holm family: Welch's; with no spread in either cell, 0 when every
    # seed pair agrees (an infinite t) and 1 otherwise; nan with one seed (no test at all).
    p: float = field(init=False)

    def __post_init__(self) -> None:
        self.welch_p = one_sided_p(self.hi, self.lo)
        if math.isfinite(self.welch_p):
            self.p = self.welch_p
        elif min(self.hi.size, self.lo.size) >= 2:
            self.p = 0.0 if self.pairs == self.hi.size * self.lo.size else 1.0
        else:
            self.p = math.nan

    @property
    def holds(self) -> bool:
        return float(np.mean(self.hi)) > float(np.mean(self.lo))

    @property
    def pairs(self) -> int:
        return int((self.hi[:, None] > self.lo[None, :]).sum())


def holm(comparisons: list[Comparison], alpha: float = ALPHA) -> dict[tuple, float]:
    """key -> Holm level over the distinct testable comparisons (reject when p < level)."""
    family = {c.key: c.p for c in comparisons if math.isfinite(c.p)}
    keys = list(family)
    return dict(zip(keys, holm_levels([family[k] for k in keys], alpha), strict=True))


def direction_verdict(c: Comparison, levels: dict[tuple, float]) -> str:
    if not c.holds:
        return NOT_REPRODUCED
    level = levels.get(c.key)
    return REPRODUCED if level is not None and c.p < level else NOT_SIGNIFICANT


def direction_text(kind: str, other: str, c: Comparison, levels: dict[tuple, float],
                   theirs: str, gap: float | None = None) -> str:
    """'above gru (113 ± 13): 9 of 9 seed pairs agree, one-sided Welch p=0.04, Holm level
    0.05 of 1 comparison; the published gap 0.65 is detectable from 4 seeds per cell'."""
    text = f"{kind} {other} ({theirs}): {c.pairs} of {c.hi.size * c.lo.size} seed pairs agree"
    level, m = levels.get(c.key), len(levels)
    if level is None:
        return text + ", one seed: no test"
    family = f"Holm level {level:.2g} of {m} comparison{'s' if m != 1 else ''}"
    if math.isfinite(c.welch_p):
        return text + f", one-sided Welch p={c.welch_p:.2g}, {family}" + _gap_text(c, gap, m)
    return text + f", no spread in either cell ({family})"


def seeds_for_gap(c: Comparison, gap: float, m: int, power: float = POWER,
                  max_seeds: int = MAX_PLANNED_SEEDS) -> int | None:
    """Seeds per cell at which a one-sided Welch test at Holm's strictest level (ALPHA / m)
    detects a true difference of `gap` with `power`, given the spreads these seeds showed;
    None when more than max_seeds would be needed or a cell has no spread estimate."""
    spread = contrast([c.lo, c.hi], [-1.0, 1.0], "welch")
    if spread is None or spread.se == 0:
        return None
    # seeds_to_decide plans a two-sided test at its alpha: 2 x the one-sided level.
    return seeds_to_decide(spread, gap, 2 * ALPHA / max(m, 1), power, max_seeds)


def _gap_text(c: Comparison, gap: float | None, m: int) -> str:
    if gap is None or not gap > 0:
        return ""
    n = seeds_for_gap(c, gap, m)
    need = (f"from {n} seeds per cell" if n is not None else
            f"not within {MAX_PLANNED_SEEDS} seeds per cell")
    return (f"; a gap as large as the published one ({gap:.3g}) is detectable at "
            f"{POWER:.0%} power and level {ALPHA / max(m, 1):.2g} {need} (spreads of these "
            f"seeds)")


def study_training(sweep: Sweep, study: str) -> tuple[bool | None, str]:
    """(trained?, 'best X vs trivial Y') of one study from its parent run; None when the
    best value or the trivial predictor's is not recorded."""
    parents = sweep.parents
    rows = parents[parents["tags.study_name"] == study] if "tags.study_name" in parents \
        else parents.iloc[:0]
    if rows.empty:
        return None, f"no parent run for {study}"
    p = rows.iloc[0]
    best = finite(p.get(sweep.best_key))
    t = sweep.trials
    if best is None and {"value", "tags.mlflow.parentRunId", "tags.state"} <= set(t.columns):
        mine = t[(t["tags.mlflow.parentRunId"] == p["run_id"]) & (t["tags.state"] == "COMPLETE")]
        values = pd.to_numeric(mine["value"], errors="coerce").dropna()
        if len(values):
            best = float(values.min() if sweep.minimize else values.max())
    trivial = finite(p.get("metrics.baseline_loss" if sweep.minimize
                            else "metrics.baseline_acc"))
    if best is None or trivial is None:
        return None, "best value or trivial predictor not recorded"
    perfect = 0.0 if sweep.minimize else 1.0
    closed = (trivial - best) / (trivial - perfect) if trivial != perfect else 0.0
    return closed >= TRAINED_SHARE, f"best {best:.4g} vs trivial {trivial:.4g}"


def rank_rows(base: dict, row: pd.Series, imp: pd.DataFrame, sweep: Sweep,
              late: set[tuple[str, str]] = frozenset()) -> list[dict]:
    """One line per study of the row's cell: the parameter's fANOVA rank, or why none; a
    study in `late` (best trial still improving at the end) says its ranks are the budget's."""
    arg = str(row["expect"]).partition(":")[2]
    param = row["metric"].partition(":")[2]
    names = {param, "param_budget"} if param == "hidden_size" else {param}
    studies = imp[imp["cell"] == row["cell"]] if len(imp) else imp
    if studies.empty:
        return [{**base, "condition": "", "ours": "n/a", "verdict": NOT_MEASURED,
                 "evidence": "no fANOVA importances (fewer than 2 complete trials or no "
                             f"{row['cell']} study)"}]
    out = []
    for study, g in studies.groupby("study"):
        g = g.sort_values("importance", ascending=False).reset_index(drop=True)
        condition = str(g["condition"].iloc[0])
        trained, numbers = study_training(sweep, str(study))
        if not trained:
            why = "runs did not train" if trained is False else "training not checked"
            out.append({**base, "condition": condition, "ours": "n/a",
                        "verdict": NOT_MEASURED,
                        "evidence": f"{study}: not measured: {why} ({numbers}; importances "
                                    f"are read when the best value closes at least "
                                    f"{TRAINED_SHARE:.0%} of the gap from the trivial "
                                    f"predictor to a perfect score)"})
            continue
        hit = g[g["parameter"].isin(names)]
        rank = int(hit.index[0]) + 1 if len(hit) else None
        order = ", ".join(f"{p} {v:.2f}" for p, v in zip(g["parameter"], g["importance"],
                                                         strict=True))
        few = " (fewer than 10 complete trials: not reliable)" \
            if bool(g["few_trials"].iloc[0]) else ""
        if (str(row["cell"]), condition) in late:
            few += ("; not converged: the best trial was still improving in the last 10 % of "
                    "its step budget, so these are the importances of that budget")
        out.append({**base, "condition": condition,
                    "ours": "n/a" if rank is None else f"rank {rank}",
                    "verdict": NOT_MEASURED if rank is None else
                    (REPRODUCED if rank == int(arg) else NOT_REPRODUCED),
                    "evidence": f"{study}: {order}; {int(g['n_trials'].iloc[0])} complete "
                                f"trials{few}; trained: {numbers}"})
    return out
