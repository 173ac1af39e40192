"""Statistics of the report against brute force and constructed inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rnnsweep.report.stats import compare_means, expected_best, paired_ratio


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
    c = compare_means(a, b, resamples=500, seed=1)
    assert c is not None
    assert c.diff == pytest.approx(1.0)
    assert c.p_value < 1e-4
    assert c.ci_low <= c.diff <= c.ci_high and c.ci_low > 0.8


def test_compare_means_needs_two_values_per_group() -> None:
    assert compare_means([1.0], [1.0, 2.0]) is None


def test_paired_ratio() -> None:
    r = paired_ratio([2.0, 4.0, 8.0, 1.0, 3.0, 5.0], [1.0, 2.0, 4.0, 0.5, 1.5, 2.5])
    assert r is not None and r.n == 6
    assert r.geo_mean == pytest.approx(0.5)
    assert r.p_value == pytest.approx(0.03125)  # exact two-sided Wilcoxon, all signs agree
    assert paired_ratio([], []) is None
