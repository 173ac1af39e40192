"""Sequential re-evaluation seeds: when to stop adding seeds to a two-cell comparison.

Rule: a Bonferroni split of alpha over the planned looks (Pocock-like: the same level at every
look). With K planned looks (e.g. 3, 5, 7 seeds per cell) each look tests at alpha / K; by
the union bound the chance of any false "different" over all looks is at most alpha, whatever
the dependence between looks, and the chance of any false "equivalent" at most alpha / 2.
Conservative against an O'Brien-Fleming or Pocock boundary, but valid for Welch statistics
and unequal spreads, where exact group-sequential boundaries are not.

Typical use by the pipeline, after each round of seeds (one list of values per cell)::

    plan = plan_looks(start=3, max_seeds=9, step=2, alpha=0.05)   # looks at 3, 5, 7, 9
    d = decide(lstm_values, gru_values, plan, scale="auto", margin=None)
    if d.stop: ...                     # decided, or the plan is used up
    else: add seeds up to d.next_seeds
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rnnsweep.report.stats import Comparison, Contrast, compare_means, compare_paired, tost_p

DIFFERENT, EQUIVALENT, UNDECIDED = "different", "equivalent", "undecided"


@dataclass(frozen=True)
class SeedPlan:
    """Seeds per cell at each planned look, and the overall error rate alpha."""

    looks: tuple[int, ...]
    alpha: float

    @property
    def alpha_per_look(self) -> float:
        return self.alpha / len(self.looks)


def plan_looks(start: int, max_seeds: int, step: int, alpha: float) -> SeedPlan:
    """Looks at start, start + step, ... up to max_seeds (always included)."""
    if start < 2 or step < 1 or max_seeds < start:
        raise ValueError(f"need 2 <= start <= max_seeds and step >= 1, got {start}, "
                         f"{max_seeds}, {step}")
    looks = list(range(start, max_seeds + 1, step))
    if looks[-1] != max_seeds:
        looks.append(max_seeds)
    return SeedPlan(tuple(looks), alpha)


@dataclass
class LookDecision:
    """The outcome at one look: stop or add seeds, and what the data allow so far."""

    look: int                # 1-based index of the look in the plan
    n_seeds: int             # seeds per cell used (the smaller group)
    verdict: str             # different | equivalent | undecided
    stop: bool               # decided, or the last planned look reached
    next_seeds: int | None   # seeds per cell for the next look; None when stopping
    comparison: Comparison | None
    mde: float | None        # minimum detectable effect at this n, at the look's level
    seeds_needed: int | None  # seeds per cell that would detect the observed effect


def seed_plan(search: Mapping, alpha: float) -> SeedPlan | None:
    """The planned looks, or None when the sweep adds no seeds after the first look."""
    first = int(search.get("reeval_seeds") or 0)
    top = int(search.get("reeval_max_seeds") or first)
    if first < 2 or top <= first:
        return None
    return plan_looks(first, top, int(search.get("reeval_seed_step") or 1), alpha)


def look_index(plan: SeedPlan, n_seeds: int) -> int:
    """1-based index of the last planned look reached with n_seeds per cell (0: none yet)."""
    return int(np.searchsorted(plan.looks, n_seeds, side="right"))


def decide(
    a: list[float], b: list[float], plan: SeedPlan, scale: str = "auto",
    margin: float | None = None, power: float = 0.8, max_seeds: int = 100,
    paired: bool = False, level_divisor: int = 1,
) -> LookDecision:
    """Decide at the look reached by min(len(a), len(b)) seeds per cell.

    'different' when the Welch test rejects at alpha / K; with a margin (on the comparison's
    scale) 'equivalent' when the (1 - alpha / K) interval lies within +-margin. Values are
    only ever used at planned looks: extra seeds beyond the look just reached are ignored,
    since peeking between looks would spend alpha the plan does not have. paired: a[i] and
    b[i] are one seed's two runs (a paired t-test). level_divisor: test at alpha / K / d, the
    strictest Holm step of d claims the report may test this comparison among.
    """
    n = min(len(a), len(b))
    k = look_index(plan, n)
    if k == 0:
        return LookDecision(0, n, UNDECIDED, False, plan.looks[0], None, None, None)
    used = plan.looks[k - 1]
    a_level = plan.alpha_per_look / level_divisor
    comp = (compare_paired(a[:used], b[:used], level=1 - a_level, scale=scale) if paired else
            compare_means(a[:used], b[:used], level=1 - a_level, scale=scale))
    last = k == len(plan.looks)
    nxt = None if last else plan.looks[k]
    if comp is None or comp.contrast is None:
        return LookDecision(k, used, UNDECIDED, last, nxt, comp, None, None)
    c = comp.contrast
    verdict = UNDECIDED
    if comp.p_value < a_level:
        verdict = DIFFERENT
    elif margin is not None and tost_p(c, margin) < a_level:
        verdict = EQUIVALENT
    decided = verdict != UNDECIDED
    return LookDecision(
        k, used, verdict, decided or last, None if decided else nxt, comp,
        None if decided else c.mde(a_level, power),
        None if decided else seeds_to_decide(c, abs(c.estimate), a_level, power, max_seeds))


def seeds_to_decide(
    c: Contrast, effect: float, alpha: float, power: float = 0.8, max_seeds: int = 100
) -> int | None:
    """Seeds per group at which the contrast's spreads would detect `effect` (> 0) with the
    given power; None when not within max_seeds (or the effect is 0)."""
    if effect <= 0 or not np.isfinite(effect):
        return None
    for n in range(max(2, max(c.n, default=2)), max(max_seeds, 2) + 1):
        if c.at_n(n).mde(alpha, power) <= effect:
            return n
    return None
