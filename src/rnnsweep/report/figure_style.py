"""The report's figure style: panels, legends, notes on empty panels, error bars clipped to a
metric's range, readable log ticks, and the one place a figure is saved (report/figures.py
draws with these)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rnnsweep.report.render import writing  # noqa: E402

CELL_COLORS = {"lstm": "tab:blue", "gru": "tab:orange", "rnn": "tab:green"}
# At most this many labelled ticks on a log axis: more collide in a 3-inch panel.
MAX_LOG_TICKS = 6


def save(fig: plt.Figure, path: Path) -> Path:
    """Lay out, write (an error names the file: render.writing) and close a figure."""
    fig.tight_layout()
    try:
        with writing(path):
            fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)
    return path


def legend(ax: plt.Axes, outside: bool = False) -> None:
    """'best' keeps a legend off the lines and points where it can; `outside` puts it right
    of the panel, for bars (which fill the panel: no free corner) and crowded panels."""
    if not ax.get_legend_handles_labels()[0]:  # an empty panel gets no (warning-raising) legend
        return
    if outside:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=7, loc="best")


def grid(n_rows: int, n_cols: int, w: float = 4.0, h: float = 3.0
         ) -> tuple[plt.Figure, np.ndarray]:
    """A figure of n_rows x n_cols panels (at least one each way), w x h inches a panel."""
    rows, cols = max(n_rows, 1), max(n_cols, 1)
    return plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)


def note(ax: plt.Axes, text: str) -> None:
    """An empty panel says why, instead of drawing bare axes that read as a zero result."""
    # Wrapped by hand: matplotlib's wrap=True wraps at the figure's edge, not the panel's.
    ax.text(0.5, 0.5, textwrap.fill(text, 36), ha="center", va="center", fontsize=8,
            transform=ax.transAxes)
    ax.set_axis_off()


def note_empty(axes: np.ndarray, text: str) -> None:
    for ax in np.ravel(axes):
        if not ax.has_data() and not ax.texts:
            note(ax, text)


def metric_range(metric: str) -> tuple[float | None, float | None]:
    """The values a metric can take, by its name: losses (MSE, cross-entropy) >= 0,
    accuracies within [0, 1]; None where unknown. A +-sd band or error bar is clipped to it:
    a loss band below 0 shows values no run can have."""
    name = metric.lower()
    if "acc" in name:
        return 0.0, 1.0
    if "loss" in name:
        return 0.0, None
    return None, None


def clip(values: np.ndarray | pd.Series, bounds: tuple[float | None, float | None]
          ) -> np.ndarray:
    low, high = bounds
    return np.clip(np.asarray(values, float), -np.inf if low is None else low,
                   np.inf if high is None else high)


def yerr(mean: pd.Series | np.ndarray, sd: pd.Series | np.ndarray,
          bounds: tuple[float | None, float | None]) -> np.ndarray:
    """Asymmetric error bars mean +- sd, each end clipped to the metric's range."""
    mean = np.asarray(mean, float)
    sd = np.nan_to_num(np.asarray(sd, float))
    return np.array([mean - clip(mean - sd, bounds), clip(mean + sd, bounds) - mean])


def floor_ylim(ax: plt.Axes, bounds: tuple[float | None, float | None]) -> None:
    """Autoscale's margin would show a loss axis going below 0 (or an accuracy above 1)."""
    if ax.get_yscale() != "linear":
        return
    lo, hi = ax.get_ylim()
    low, high = bounds
    ax.set_ylim(lo if low is None else max(lo, low), hi if high is None else min(hi, high))


def number(v: float, _pos: object = None) -> str:
    return f"{v:g}"


def log_ticks(axis: matplotlib.axis.Axis, integer: bool = False) -> None:
    """Plain-number ticks on a log axis that stay readable: matplotlib labels the minor
    ticks of an axis spanning less than a decade (1.3x10^1, 1.4x10^1, ... written over each
    other), and no tick at all when no power of ten falls in the range. Takes the 1-2-5
    series inside the view, thinned to MAX_LOG_TICKS; a range too narrow for two of those
    gets linear-looking ticks (12, 14, 16, ...) instead, whole numbers for an `integer`
    quantity (a hidden size of 17.5 does not exist). Call after the data is drawn."""
    lo, hi = sorted(axis.get_view_interval())
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        return
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    for mantissas in ((1, 2, 5), (1,)):
        ticks = [m * 10.0**d for d in decades for m in mantissas if lo <= m * 10.0**d <= hi]
        if len(ticks) <= MAX_LOG_TICKS:
            break
    ticks = ticks[::max(1, int(np.ceil(len(ticks) / MAX_LOG_TICKS)))]
    if len(ticks) < 2:
        linear = ticker.MaxNLocator(nbins=4, integer=integer).tick_values(lo, hi)
        ticks = [t for t in linear if lo <= t <= hi]
    axis.set_ticks(ticks)
    axis.set_major_formatter(ticker.FuncFormatter(number))
    axis.set_minor_formatter(ticker.NullFormatter())
