"""Simulations: the report's intervals cover, equivalence is not over-declared, and the
sequential seed rule keeps its false-positive rate over all looks. Thousands of draws each:
make test runs them, make test-fast leaves them out."""

from __future__ import annotations

import numpy as np
import pytest

from rnnsweep.report.sequential import DIFFERENT, decide, plan_looks
from rnnsweep.report.stats import compare_means, compare_paired, contrast, tost_p

pytestmark = pytest.mark.slow
REPS = 1500


def _draw(rng: np.random.Generator, kind: str, n_a: int, n_b: int, sd_b: float):
    """LSTM (a) and GRU (b) values with a known true effect on the compared scale."""
    if kind == "normal":  # raw scale, true difference 0.3, spreads differ
        return rng.normal(1.0, 0.1, n_a), rng.normal(1.3, 0.1 * sd_b, n_b), 0.3, "raw"
    # lognormal losses spanning orders of magnitude: true log ratio log(30)
    a = rng.lognormal(np.log(0.0133), 0.45, n_a)
    b = rng.lognormal(np.log(0.0133 * 30), 0.45 * sd_b, n_b)
    return a, b, np.log(30), "log"


@pytest.mark.parametrize("kind", ["normal", "lognormal"])
@pytest.mark.parametrize(("n_a", "n_b"), [(2, 2), (3, 3), (5, 5), (3, 2)])
def test_interval_coverage_at_small_n(kind: str, n_a: int, n_b: int) -> None:
    rng = np.random.default_rng(11)
    for sd_b in (1.0, 4.0):
        covered = 0
        for _ in range(REPS):
            a, b, true, scale = _draw(rng, kind, n_a, n_b, sd_b)
            c = compare_means(a, b, scale=scale)
            assert c is not None and c.scale == scale
            covered += c.ci_low <= true <= c.ci_high
            # interval and p-value from one statistic: they never disagree
            assert (c.p_value < 0.05) == (c.ci_low > 0 or c.ci_high < 0)
        assert covered / REPS >= 0.93, (kind, n_a, n_b, sd_b, covered / REPS)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_false_equivalence_at_the_margin(n: int) -> None:
    """True difference exactly at the margin: 'comparable' at most 2.5 % of the time."""
    rng = np.random.default_rng(5)
    margin = 0.017
    for sd_b in (1.0, 3.0):
        hits = 0
        for _ in range(REPS):
            a = rng.normal(0.10, 0.01, n)
            b = rng.normal(0.10 + margin, 0.01 * sd_b, n)
            c = compare_means(a, b, scale="raw")
            hits += tost_p(c.contrast, margin) < 0.05  # type: ignore[arg-type]
        assert hits / REPS <= 0.025, (n, sd_b, hits / REPS)


def test_interaction_interval_coverage() -> None:
    """Difference of differences over four independent groups with unequal spreads."""
    rng = np.random.default_rng(3)
    for n in (2, 3, 5):
        covered = 0
        for _ in range(REPS):
            groups = [rng.normal(m, s, n) for m, s in
                      ((0.06, 0.004), (0.01, 0.001), (0.02, 0.01), (0.01, 0.002))]
            c = contrast(groups, [1, -1, -1, 1])
            lo, hi = c.interval(0.95)  # type: ignore[union-attr]
            covered += lo <= 0.04 <= hi
        assert covered / REPS >= 0.93, (n, covered / REPS)


def test_sequential_rule_keeps_alpha_over_all_looks() -> None:
    """1,200 null comparisons, looks at 3, 5, 7 and 9 seeds per cell."""
    rng = np.random.default_rng(7)
    plan = plan_looks(start=3, max_seeds=9, step=2, alpha=0.05)
    assert plan.looks == (3, 5, 7, 9)
    n_sims, false_pos, naive = 1200, 0, 0
    for _ in range(n_sims):
        a, b = rng.normal(0, 1, 9), rng.normal(0, rng.choice([1.0, 3.0]), 9)
        naive += any(compare_means(a[:n], b[:n]).p_value < 0.05  # type: ignore[union-attr]
                     for n in plan.looks)
        for n in plan.looks:
            d = decide(a[:n].tolist(), b[:n].tolist(), plan, scale="raw")
            if d.stop:
                false_pos += d.verdict == DIFFERENT
                break
    assert false_pos / n_sims <= 0.05, false_pos / n_sims
    # testing every look at the full alpha would spend more than alpha
    assert naive > false_pos


def test_sequential_rule_stops_early_on_a_large_effect() -> None:
    plan = plan_looks(3, 9, 2, 0.05)
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 0.05, 3), rng.normal(2.0, 0.05, 3)
    d = decide(a.tolist(), b.tolist(), plan, scale="raw")
    assert d.stop and d.verdict == DIFFERENT and d.look == 1 and d.mde is None


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_false_equivalence_at_a_ratio_band(n: int) -> None:
    """Losses spread log-normally, true ratio exactly at the band's edge (1.25): the ratio
    band declares 'comparable' at most 5 % of the time (TOST on logs, as the report does)."""
    rng = np.random.default_rng(9)
    margin = np.log(1.25)
    for sd_b in (1.0, 3.0):
        hits = 0
        for _ in range(REPS):
            a = rng.lognormal(np.log(0.002), 0.15, n)
            b = rng.lognormal(np.log(0.002) + margin, 0.15 * sd_b, n)
            c = compare_means(a, b, scale="log")
            hits += tost_p(c.contrast, margin) < 0.05  # type: ignore[arg-type]
        assert hits / REPS <= 0.05, (n, sd_b, hits / REPS)


# -- paired by seed: seed k of both cells shares its data draw -----------------------------
def _paired_draw(rng: np.random.Generator, n: int, log_ratio: float, sd_b: float):
    """Losses whose seed (data draw) moves both cells alike (log-normal, sd 0.4 on logs,
    larger than the cells' own noise): the situation pairing is for."""
    draw = rng.normal(0.0, 0.4, n)
    a = np.exp(np.log(0.1) + draw + rng.normal(0.0, 0.05, n))
    b = np.exp(np.log(0.1) + log_ratio + draw + rng.normal(0.0, 0.05 * sd_b, n))
    return a, b


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_paired_interval_coverage(n: int) -> None:
    rng = np.random.default_rng(17)
    for sd_b in (1.0, 3.0):
        covered = 0
        for _ in range(REPS):
            a, b = _paired_draw(rng, n, np.log(1.1), sd_b)
            c = compare_paired(a, b, scale="log")
            assert c is not None and c.scale == "log"
            covered += c.ci_low <= np.log(1.1) <= c.ci_high
            assert (c.p_value < 0.05) == (c.ci_low > 0 or c.ci_high < 0)
        assert covered / REPS >= 0.93, (n, sd_b, covered / REPS)


@pytest.mark.parametrize("n", [3, 5, 12, 19])
def test_paired_false_equivalence_at_the_band_edge(n: int) -> None:
    """True ratio exactly at the band's edge (1.25): 'comparable' at most 5 % of the time."""
    rng = np.random.default_rng(23)
    margin = np.log(1.25)
    for sd_b in (1.0, 3.0):
        hits = 0
        for _ in range(REPS):
            a, b = _paired_draw(rng, n, margin, sd_b)
            c = compare_paired(a, b, scale="log")
            hits += tost_p(c.contrast, margin) < 0.05  # type: ignore[arg-type,union-attr]
        assert hits / REPS <= 0.05, (n, sd_b, hits / REPS)


def test_pairing_is_what_narrows_the_interval() -> None:
    """The same draws: Welch counts the shared draw in both spreads, the paired test drops it
    (the reason the comparable claim pairs seeds)."""
    a, b = _paired_draw(np.random.default_rng(1), 7, np.log(1.1), 1.0)
    welch, paired = compare_means(a, b, scale="log"), compare_paired(a, b, scale="log")
    assert paired.ci_high - paired.ci_low < 0.5 * (welch.ci_high - welch.ci_low)
