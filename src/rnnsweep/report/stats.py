"""Statistics of the report: expected best value over n trials, and two-sample comparisons."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def expected_best(
    values: list[float] | np.ndarray, n_max: int, minimize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Expected best value and its sd after n = 1..n_max trials (Dodge et al. 2019).

    The n trials are drawn with replacement from the empirical distribution of the observed
    trial values. With v sorted from worst to best, P(best of n = v_i) = (i/N)^n - ((i-1)/N)^n
    (the weights stay correct under ties), so mean and variance are weighted sums.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        nan = np.full(n_max, np.nan)
        return nan, nan
    worst_to_best = np.sort(v)[::-1] if minimize else np.sort(v)
    big_n = v.size
    i = np.arange(1, big_n + 1)
    means, sds = np.empty(n_max), np.empty(n_max)
    for n in range(1, n_max + 1):
        w = (i / big_n) ** n - ((i - 1) / big_n) ** n
        mean = float(np.sum(w * worst_to_best))
        var = float(np.sum(w * worst_to_best**2)) - mean**2
        means[n - 1], sds[n - 1] = mean, np.sqrt(max(var, 0.0))
    return means, sds


@dataclass
class Comparison:
    """b versus a: difference of means (b - a), its bootstrap CI, and Welch's t-test."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str

    def text(self) -> str:
        return (f"diff {self.diff:+.4g} (95% CI {self.ci_low:+.4g} to {self.ci_high:+.4g}), "
                f"{self.test} p={self.p_value:.3g}, n={self.n_a}/{self.n_b}")


def compare_means(
    a: list[float], b: list[float], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> Comparison | None:
    """Welch's t-test (unequal variances: cells differ in spread) and a percentile bootstrap
    CI of mean(b) - mean(a); None when a group has fewer than two values."""
    xa, xb = np.asarray(a, float), np.asarray(b, float)
    xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
    if xa.size < 2 or xb.size < 2:
        return None
    diff = float(xb.mean() - xa.mean())
    if np.ptp(np.concatenate([xa, xb])) == 0:
        return Comparison(xa.size, xb.size, float(xa.mean()), float(xb.mean()), diff,
                          diff, diff, 1.0, "Welch t-test")
    p = float(stats.ttest_ind(xb, xa, equal_var=False).pvalue)
    boot = stats.bootstrap(
        (xb, xa), lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        n_resamples=resamples, confidence_level=level, method="percentile",
        rng=np.random.default_rng(seed),
    )
    ci = boot.confidence_interval
    return Comparison(xa.size, xb.size, float(xa.mean()), float(xb.mean()), diff,
                      float(ci.low), float(ci.high), p if np.isfinite(p) else 1.0, "Welch t-test")


@dataclass
class PairedRatio:
    """Per-pair ratio b/a on identical configurations: geometric mean, range, Wilcoxon p."""

    n: int
    geo_mean: float
    low: float
    high: float
    p_value: float

    def text(self) -> str:
        return (f"ratio GRU/LSTM geometric mean {self.geo_mean:.3g} (range {self.low:.3g}-"
                f"{self.high:.3g}) over {self.n} identical configurations, "
                f"Wilcoxon signed-rank p={self.p_value:.3g}")


def paired_ratio(a: list[float], b: list[float]) -> PairedRatio | None:
    """Wilcoxon signed-rank test of log(b/a) = 0: pairs share everything but the cell."""
    xa, xb = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(xa) & np.isfinite(xb) & (xa > 0) & (xb > 0)
    if ok.sum() == 0:
        return None
    logs = np.log(xb[ok] / xa[ok])
    if ok.sum() < 2 or np.all(logs == 0):
        p = 1.0
    else:
        p = float(stats.wilcoxon(logs).pvalue)
    ratios = np.exp(logs)
    return PairedRatio(int(ok.sum()), float(np.exp(logs.mean())), float(ratios.min()),
                       float(ratios.max()), p)
