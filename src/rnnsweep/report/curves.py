"""Learning curves in data size: each cell's test loss and eval-mode gap against the number
of training sequences, for sweeps whose `data.size` values are curve points
(rnnsweep.data.sizes: `data.size=0.05,0.1,0.25,0.5,1`).

Per cell, a power law test_loss = c * n^b is fitted as a least-squares line of the mean
log loss per size against log n, with the same unpooled, Hsu-df contrast as every other
interval of the report (rnnsweep.report.stats.contrast): each size weighs the same,
whatever its seed count, and sizes may differ in spread. Two cells' lines cross where their
difference is zero; its interval inverts the test of a difference at each n (Fieller's
method): the sizes where the curves cannot be told apart. The gap's slope against log n
says how fast a cell's overfitting shrinks with data; with three or more sizes the
overfitting claim uses the difference of two cells' slopes (performance_claims).

What the fits assume: independent seeds, a straight line on log-log axes over the measured
range (the table shows each size's mean beside the fit), and nothing beyond that range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnsweep.data.sizes import curve_point
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.settings import Settings
from rnnsweep.report.stats import Contrast, contrast

GAP = "metrics.gap_at_best"


@dataclass
class Point:
    """One cell at one size: its training-set size and the re-evaluation seeds' values."""

    condition: str
    n: float
    loss: np.ndarray
    gap: np.ndarray


def _n_train(ev: Evidence, cond: str) -> float | None:
    rows = ev.parents[ev.parents["condition"] == cond]
    for col in ("metrics.n_train", "tags.data.n"):
        if col in rows.columns:
            v = pd.to_numeric(rows[col], errors="coerce").dropna()
            if len(v):
                return float(v.iloc[0])
    return None


def slope_weights(x: np.ndarray) -> np.ndarray:
    """Weights w with sum(w * y) = the least-squares slope of y against x, one y per x."""
    return (x - x.mean()) / np.sum((x - x.mean()) ** 2)


def curve_points(ev: Evidence, s: Settings) -> dict[str, dict[str, list[Point]]]:
    """{rest of the condition (other data keys): {cell: points sorted by n}} for the
    conditions whose size is a curve point; a cell's point needs two finished seeds."""
    out: dict[str, dict[str, list[Point]]] = {}
    for cond in ev.conditions():
        head, _, rest = cond.partition(" ")
        if curve_point(head) is None or (n := _n_train(ev, cond)) is None:
            continue
        for cell in ev.cells(cond):
            loss = np.asarray(ev.values(cell, cond, s.test_col), float)
            if loss.size < 2:
                continue
            gap = np.asarray(ev.values(cell, cond, GAP), float)
            out.setdefault(rest, {}).setdefault(cell, []).append(Point(cond, n, loss, gap))
    for cells in out.values():
        for points in cells.values():
            points.sort(key=lambda p: p.n)
    return out


def slope(points: list[Point], values: str, log_y: bool) -> Contrast | None:
    """Least-squares slope of the per-size mean of `values` ('loss' or 'gap') against log n;
    None below three sizes (two sizes give a line with no test of its shape) or where a
    size lacks two values."""
    groups = [np.log(getattr(p, values)) if log_y else getattr(p, values) for p in points]
    if len(points) < 3 or any(g.size < 2 for g in groups):
        return None
    x = np.log([p.n for p in points])
    w = slope_weights(x)
    return contrast(groups, list(w))


def slope_difference_terms(a: list[Point], b: list[Point],
                           values: str) -> tuple[list[np.ndarray], list[float]] | None:
    """Groups and weights of (slope of b) - (slope of a) against log n over the sizes both
    cells reached (at least three), for rnnsweep.report.stats.contrast; None otherwise."""
    shared = sorted({p.n for p in a} & {p.n for p in b})
    a = [p for p in a if p.n in shared]
    b = [p for p in b if p.n in shared]
    if len(shared) < 3 or any(getattr(p, values).size < 2 for p in a + b):
        return None
    x = np.log(shared)
    w = slope_weights(x)
    return ([getattr(p, values) for p in b] + [getattr(p, values) for p in a],
            [*w, *(-w)])


def _difference_at(a: list[Point], b: list[Point], x: float) -> Contrast | None:
    """b's fitted mean log loss minus a's at log n = x: a linear contrast of the per-size
    mean log losses (intercept and slope of each least-squares line are linear in them)."""
    def coefficients(points: list[Point]) -> np.ndarray:
        xs = np.log([p.n for p in points])
        w = slope_weights(xs)
        return 1.0 / len(points) + w * (x - xs.mean())

    groups = [np.log(p.loss) for p in b] + [np.log(p.loss) for p in a]
    return contrast(groups, [*coefficients(b), *(-coefficients(a))])


def crossing(a: list[Point], b: list[Point], seed: int = 0,
             level: float = 0.95) -> tuple[float, float, float] | None:
    """Where the two fitted power laws meet, (n*, low, high), when n* lies within the sizes
    both cells reached; None otherwise (no crossing in the measured range). The interval
    inverts the test of "the curves differ at n" (Fieller's method, on a grid of 400 log-
    spaced n): every n where the difference's interval holds 0. An end at the measured range
    means the data cannot bound it there. `seed` is unused (the interval is analytic)."""
    del seed
    if len(a) < 2 or len(b) < 2:
        return None
    lo_n, hi_n = max(a[0].n, b[0].n), min(a[-1].n, b[-1].n)
    grid = np.linspace(np.log(lo_n), np.log(hi_n), 400)
    diffs = [_difference_at(a, b, float(x)) for x in grid]
    if any(d is None for d in diffs):
        return None
    est = np.array([d.estimate for d in diffs])  # type: ignore[union-attr]
    sign = np.sign(est)
    roots = np.nonzero(sign[:-1] * sign[1:] < 0)[0]
    if roots.size != 1:  # parallel within the range, or a line that never changes sign
        return None
    k = int(roots[0])
    x0 = grid[k] - est[k] * (grid[k + 1] - grid[k]) / (est[k + 1] - est[k])
    holds = [lo_ <= 0 <= hi_ for lo_, hi_ in (d.interval(level) for d in diffs)]  # type: ignore[union-attr]
    inside = grid[np.asarray(holds)]
    return float(np.exp(x0)), float(np.exp(inside.min())), float(np.exp(inside.max()))


def curves_table(ev: Evidence, s: Settings, seed: int = 0) -> pd.DataFrame:
    """One row per (data group, cell): the exponent, the gap slope, each size's mean loss."""
    rows = []
    for rest, cells in curve_points(ev, s).items():
        names = sorted(cells)
        for cell in names:
            points = cells[cell]
            exp = slope(points, "loss", log_y=True)
            gap = slope(points, "gap", log_y=False) if all(p.gap.size for p in points) \
                else None
            rows.append({
                "data": rest or "-", "cell": cell, "sizes": str(len(points)),
                "n_train": ", ".join(f"{p.n:g}" for p in points),
                "mean test loss per size": ", ".join(f"{np.exp(np.log(p.loss).mean()):.4g}"
                                                     for p in points),
                "exponent b (loss ~ n^b)": _with_interval(exp, s.alpha),
                "gap slope per e-fold of n": _with_interval(gap, s.alpha),
                "crossing n": "",
            })
        for i, first in enumerate(names):
            for second in names[i + 1:]:
                cross = crossing(cells[first], cells[second], seed, 1 - s.alpha)
                rows.append({"data": rest or "-", "cell": f"{first} vs {second}",
                             "sizes": "", "n_train": "", "mean test loss per size": "",
                             "exponent b (loss ~ n^b)": "", "gap slope per e-fold of n": "",
                             "crossing n": "no crossing in the measured range" if cross is None
                             else f"{cross[0]:.4g} ({cross[1]:.4g} to {cross[2]:.4g})"})
    return pd.DataFrame(rows)


def _with_interval(c: Contrast | None, alpha: float) -> str:
    if c is None:
        return "n/a (needs 3 sizes with 2 seeds)"
    lo, hi = c.interval(1 - alpha)
    return f"{c.estimate:+.3g} ({lo:+.3g} to {hi:+.3g})"
