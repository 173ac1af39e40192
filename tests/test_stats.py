"""Statistics of the report against brute force and constructed inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from rnnsweep.report.sequential import plan_looks, seeds_to_decide
from rnnsweep.report.stats import (
    Contrast,
    compare_means,
    contrast,
    expected_best,
    holm_levels,
    outside_margin_p,
    tost_p,
)


def brute_force_best(values: list[float], n: int, minimize: bool) -> tuple[float, float]:
    """Mean and sd of the best of n draws with replacement, over all N^n equally likely draws."""
    pick = min if minimize else max
    bests = [pick(draw) for draw in itertools.product(values, repeat=n)]
    return float(np.mean(bests)), float(np.std(bests))


@pytest.mark.parametrize("minimize", [True, False])
@pytest.mark.parametrize("values", [
    [0.3, 0.1, 0.7, 0.4],
    [0.5, 0.5, 0.2, 0.9, 0.2],  # ties
    [1.0],
    [2.0, -1.0, 3.5],
])
def test_expected_best_matches_enumeration(values: list[float], minimize: bool) -> None:
    n_max = 4
    means, sds = expected_best(values, n_max, minimize=minimize)
    for n in range(1, n_max + 1):
        mean, sd = brute_force_best(values, n, minimize)
        assert means[n - 1] == pytest.approx(mean, abs=1e-12)
        assert sds[n - 1] == pytest.approx(sd, abs=1e-9)


def test_expected_best_random_inputs_and_monotone() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=6).tolist()
    means, sds = expected_best(values, 5, minimize=True)
    for n in (1, 3, 5):
        mean, sd = brute_force_best(values, n, True)
        assert means[n - 1] == pytest.approx(mean) and sds[n - 1] == pytest.approx(sd)
    assert np.all(np.diff(means) <= 1e-12)  # more trials never make the expected best worse
    assert means[0] == pytest.approx(np.mean(values))


def test_expected_best_ignores_non_finite() -> None:
    means, _ = expected_best([0.2, float("nan"), 0.4], 2, minimize=True)
    assert means[0] == pytest.approx(0.3)


def test_compare_means_detects_a_clear_difference() -> None:
    a = [1.0, 1.1, 0.9, 1.05, 0.95]
    b = [2.0, 2.1, 1.9, 2.05, 1.95]
    c = compare_means(a, b)
    assert c is not None
    assert c.diff == pytest.approx(1.0)
    assert c.p_value < 1e-4
    assert c.ci_low <= c.diff <= c.ci_high and c.ci_low > 0.8


def test_welch_rule_matches_scipy() -> None:
    a, b = [0.3, 0.5, 0.4, 0.45], [0.9, 0.2, 0.7]
    c = compare_means(a, b, df_rule="welch")
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert c is not None and c.p_value == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))
    # Hsu's df (min n - 1 = 2) is more conservative than Welch-Satterthwaite
    hsu = compare_means(a, b)
    assert hsu.p_value > c.p_value and hsu.ci_high - hsu.ci_low > c.ci_high - c.ci_low


def test_thirty_fold_difference_is_decided_on_the_log_scale() -> None:
    """The issue's case: GRU 0.00039 +- 0.00009 vs LSTM 0.0133 +- 0.0059 at 3 seeds."""
    lstm, gru = [0.0090, 0.0108, 0.0200], [0.00030, 0.00040, 0.00048]
    raw = compare_means(lstm, gru, scale="raw")
    log = compare_means(lstm, gru, scale="auto")
    assert raw.p_value > 0.05  # the raw scale cannot see it at 3 seeds
    assert log.scale == "log" and log.p_value < 0.01
    assert np.exp(log.ci_high) < 0.2  # GRU/LSTM ratio surely below a fifth
    assert "ratio 0.0" in log.text()


def test_compare_means_needs_two_values_per_group() -> None:
    assert compare_means([1.0], [1.0, 2.0]) is None
    assert compare_means([1.0, -1.0], [1.0, 2.0], scale="log") is None  # logs of positives


def test_tost_matches_the_interval() -> None:
    c = compare_means([0.10, 0.11, 0.09, 0.10], [0.101, 0.111, 0.091, 0.1])
    low, high = c.contrast.interval(0.95)
    for margin in (0.001, 0.01, max(abs(low), abs(high)) * 1.0001):
        inside = -margin < low and high < margin
        assert (tost_p(c.contrast, margin) < 0.05) == inside
        assert outside_margin_p(c.contrast, margin) == pytest.approx(1.0) or not inside


def test_holm_levels() -> None:
    # sorted p: 0.001 < 0.01 < 0.04; thresholds 0.05/3, 0.05/2, 0.05/1
    assert holm_levels([0.04, 0.001, 0.01], 0.05) == pytest.approx([0.05, 0.05 / 3, 0.025])
    # 0.03 fails at 0.025: it and every later test keep that level (not rejected)
    levels = holm_levels([0.001, 0.03, 0.04], 0.05)
    assert levels == pytest.approx([0.05 / 3, 0.025, 0.025])
    assert [p < a for p, a in zip([0.001, 0.03, 0.04], levels, strict=True)] == \
        [True, False, False]


def test_contrast_slope_and_interaction() -> None:
    # slope of group means (1, 2, 3) over x = (0, 1, 2): weights (x - mean) / sum (x - mean)^2
    groups = [np.array([0.9, 1.1]), np.array([1.9, 2.1]), np.array([2.9, 3.1])]
    c = contrast(groups, [-0.5, 0.0, 0.5])
    assert c.estimate == pytest.approx(1.0) and c.df == 1  # Hsu: min n - 1
    assert c.se == pytest.approx(np.sqrt(0.25 * 0.02 / 2 * 2))
    assert contrast([np.array([1.0]), np.array([1.0, 2.0])], [1, -1]) is None


def test_minimum_detectable_effect_and_seeds() -> None:
    # z-approximation check: large n, sd 1 -> (1.96 + 0.84) * sqrt(2 / n)
    equal_sd = Contrast(0.0, 0.0, 0.0, (400, 400), (1.0, 1.0))  # two groups, sd 1
    assert equal_sd.at_n(400).mde(0.05) == pytest.approx(2.80 * np.sqrt(2 / 400), rel=0.01)
    assert equal_sd.at_n(3).mde(0.05) > equal_sd.at_n(10).mde(0.05)
    c = contrast([np.array([0.0, 1.0, 0.5]), np.array([0.3, 1.2, 0.8])], [-1, 1])
    n = seeds_to_decide(c, 1.0, 0.05)
    assert n is not None and c.at_n(n).mde(0.05) <= 1.0 < c.at_n(n - 1).mde(0.05)
    assert seeds_to_decide(c, 0.0, 0.05) is None


def test_plan_looks() -> None:
    plan = plan_looks(3, 8, 2, 0.05)
    assert plan.looks == (3, 5, 7, 8) and plan.alpha_per_look == pytest.approx(0.0125)
    with pytest.raises(ValueError):
        plan_looks(1, 8, 2, 0.05)


def test_the_paired_comparison_is_scipys_paired_t_test() -> None:
    from scipy import stats as sps

    from rnnsweep.report.stats import compare_paired

    a = [0.101, 0.095, 0.250, 0.098, 0.110]
    b = [0.099, 0.093, 0.108, 0.094, 0.104]
    c = compare_paired(a, b, level=0.95, scale="log")
    ref = sps.ttest_rel(np.log(b), np.log(a))
    assert c is not None and c.p_value == pytest.approx(ref.pvalue)
    low, high = ref.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((low, high))
    assert c.diff == pytest.approx(np.mean(np.log(b) - np.log(a)))
    assert "n=5 pairs" in c.text()
    raw = compare_paired(a, b, scale="raw")
    assert raw.p_value == pytest.approx(sps.ttest_rel(b, a).pvalue)
    with pytest.raises(ValueError, match="equal lengths"):
        compare_paired(a, b[:4])
    assert compare_paired([0.1], [0.2]) is None
