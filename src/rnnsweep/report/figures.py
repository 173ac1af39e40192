"""PNG figures of the report (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from rnnsweep.report.collect import Sweep  # noqa: E402
from rnnsweep.report.render import writing  # noqa: E402

CELL_COLORS = {"lstm": "tab:blue", "gru": "tab:orange", "rnn": "tab:green"}
# At most this many labelled ticks on a log axis: more collide in a 3-inch panel.
MAX_LOG_TICKS = 6


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    try:
        with writing(path):
            fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)
    return path


def _legend(ax: plt.Axes, outside: bool = False) -> None:
    """'best' keeps a legend off the lines and points where it can; `outside` puts it right
    of the panel, for bars (which fill the panel: no free corner) and crowded panels."""
    if not ax.get_legend_handles_labels()[0]:  # an empty panel gets no (warning-raising) legend
        return
    if outside:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=7, loc="best")


def _grid(n_rows: int, n_cols: int, w: float = 4.0, h: float = 3.0):
    fig, axes = plt.subplots(max(n_rows, 1), max(n_cols, 1), figsize=(w * max(n_cols, 1),
                                                                     h * max(n_rows, 1)),
                             squeeze=False)
    return fig, axes


def _note(ax: plt.Axes, text: str) -> None:
    """An empty panel says why, instead of drawing bare axes that read as a zero result."""
    # Wrapped by hand: matplotlib's wrap=True wraps at the figure's edge, not the panel's.
    ax.text(0.5, 0.5, textwrap.fill(text, 36), ha="center", va="center", fontsize=8,
            transform=ax.transAxes)
    ax.set_axis_off()


def _note_empty(axes: np.ndarray, text: str) -> None:
    for ax in np.ravel(axes):
        if not ax.has_data() and not ax.texts:
            _note(ax, text)


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


def _clip(values: np.ndarray | pd.Series, bounds: tuple[float | None, float | None]
          ) -> np.ndarray:
    low, high = bounds
    return np.clip(np.asarray(values, float), -np.inf if low is None else low,
                   np.inf if high is None else high)


def _yerr(mean: pd.Series | np.ndarray, sd: pd.Series | np.ndarray,
          bounds: tuple[float | None, float | None]) -> np.ndarray:
    """Asymmetric error bars mean +- sd, each end clipped to the metric's range."""
    mean = np.asarray(mean, float)
    sd = np.nan_to_num(np.asarray(sd, float))
    return np.array([mean - _clip(mean - sd, bounds), _clip(mean + sd, bounds) - mean])


def _floor_ylim(ax: plt.Axes, bounds: tuple[float | None, float | None]) -> None:
    """Autoscale's margin would show a loss axis going below 0 (or an accuracy above 1)."""
    if ax.get_yscale() != "linear":
        return
    lo, hi = ax.get_ylim()
    low, high = bounds
    ax.set_ylim(lo if low is None else max(lo, low), hi if high is None else min(hi, high))


def _number(v: float, _pos: object = None) -> str:
    return f"{v:g}"


def _log_ticks(axis: matplotlib.axis.Axis, integer: bool = False) -> None:
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
    axis.set_major_formatter(ticker.FuncFormatter(_number))
    axis.set_minor_formatter(ticker.NullFormatter())


def learning_curves(sweep: Sweep, out: Path) -> Path:
    """Training (running and eval-mode) and validation loss per validation of each study's
    best trial, against the optimiser step."""
    parents = sweep.parents.sort_values(["condition", "tags.cell"])
    conds, cells = sorted(set(parents["condition"])), sorted(set(parents["tags.cell"]))
    fig, axes = _grid(len(conds), len(cells))
    for _, p in parents.iterrows():
        ax = axes[conds.index(p["condition"])][cells.index(p["tags.cell"])]
        curves = sweep.curves.get(str(p.get("tags.best_trial_run_id")), {})
        for key, style in (("train_loss", ":"), ("train_loss_eval", "--"), ("val_loss", "-")):
            pts = curves.get(key, [])
            if pts:  # one validation only (pruned early): a marker, or nothing shows
                ax.plot(*zip(*pts, strict=True), style, label=key,
                        marker="o" if len(pts) == 1 else None,
                        color=CELL_COLORS.get(p["tags.cell"]))
        ax.set_title(f"{p['tags.cell']} / {p['condition']}", fontsize=9)
        if not ax.has_data():
            _note(ax, "no loss curve recorded for the best trial")
            continue
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("loss")
        _floor_ylim(ax, (0.0, None))
        _legend(ax)
    _note_empty(axes, "no study of this cell and condition")
    return _save(fig, out / "learning_curves.png")


def overfitting(summary: pd.DataFrame, out: Path, metric: str | None = None) -> Path:
    """Eval-mode gap at the best validation and validation loss per cell and condition
    (mean +- sd over re-evaluation seeds). `metric`, the sweep's validation metric, names
    the second panel's axis and its range."""
    fig, axes = _grid(1, 2, w=4.5)
    conds = sorted(set(summary["condition"]))
    cells = sorted(set(summary["cell"]))
    width = 0.8 / max(len(cells), 1)
    for col, (mean, sd, label) in enumerate((
        ("gap_eval_mean", "gap_eval_sd", "eval-mode gap (val - train loss)"),
        ("val_mean", "val_sd", f"best {metric or 'validation value'} (re-evaluated)"),
    )):
        ax = axes[0][col]
        if mean not in summary or not summary[mean].notna().any():
            _note(ax, f"{label}: not recorded by this sweep's re-evaluations")
            continue
        # The gap is a difference (either sign); the validation values of every metric the
        # sweeps select on (losses, accuracies) are >= 0, so their error bars stop at 0.
        bounds = (None, None) if col == 0 else (
            metric_range(metric) if metric and metric_range(metric)[0] is not None
            else (0.0, None))
        for k, cell in enumerate(cells):
            rows = summary[summary["cell"] == cell].set_index("condition").reindex(conds)
            x = np.arange(len(conds)) + k * width
            ax.bar(x, rows[mean], width, yerr=_yerr(rows[mean], rows[sd], bounds), label=cell,
                   color=CELL_COLORS.get(cell), capsize=3)
        ax.set_xticks(np.arange(len(conds)) + width * (len(cells) - 1) / 2, conds)
        ax.set_xlabel("data")
        ax.set_ylabel(label, fontsize=9)
        if col == 0:
            ax.axhline(0.0, color="grey", linewidth=0.5)
    # One legend for both panels (the same cells), beside the last: bars leave no free corner.
    _legend(axes[0][1] if axes[0][1].has_data() else axes[0][0], outside=True)
    return _save(fig, out / "overfitting.png")


def expected_best(curves: pd.DataFrame, metric: str, out: Path) -> Path:
    """Expected best validation value vs number of trials, +-1 sd band (clipped to the
    metric's range), per cell and sampler: solid for a random-search control (the valid
    curve), dashed otherwise."""
    conds = sorted(set(curves["condition"])) if len(curves) else []
    bounds = metric_range(metric)
    fig, axes = _grid(1, len(conds))
    for i, cond in enumerate(conds):
        ax = axes[0][i]
        for (cell, sampler), rows in curves[curves["condition"] == cond].groupby(
                ["cell", "sampler"]):
            color = CELL_COLORS.get(str(cell))
            control = bool(rows["control"].iloc[0])
            ax.plot(rows["n_trials"], rows["expected"], marker="o", color=color,
                    label=f"{cell} ({sampler})", linestyle="-" if control else "--")
            sd = rows["sd"].fillna(0)
            ax.fill_between(rows["n_trials"], _clip(rows["expected"] - sd, bounds),
                            _clip(rows["expected"] + sd, bounds), alpha=0.2, color=color)
        ax.set_title(cond, fontsize=9)
        ax.set_xlabel("number of trials")
        ax.set_ylabel(f"expected best {metric}")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # trials are whole
        _floor_ylim(ax, bounds)
        _legend(ax)
    _note_empty(axes, "no complete or pruned trial to draw from")
    return _save(fig, out / "expected_best.png")


def importance(imp: pd.DataFrame, out: Path) -> Path:
    """fANOVA importance of each hyperparameter, one bar group per study."""
    fig, axes = _grid(1, 1, w=8.0)
    ax = axes[0][0]
    if imp.empty:
        _note(ax, "too few complete trials for fANOVA")
    else:
        table = imp.pivot_table(index="study", columns="parameter", values="importance")
        table.plot.barh(ax=ax, stacked=True)
        ax.set_xlabel("fANOVA importance (normalised)")
        _legend(ax, outside=True)  # stacked bars fill the panel: no corner is free
    return _save(fig, out / "importance.png")


def _categories(values: pd.Series, choices: list | None) -> list[str]:
    seen = [str(v) for v in values.dropna().unique()]
    listed = [str(c) for c in choices or []]
    return listed + sorted(v for v in seen if v not in listed)


def slices(sweep: Sweep, out: Path) -> Path:
    """Objective against each hyperparameter, every trial of every study (Optuna's slice
    plot, drawn per cell so the cells can be compared)."""
    names = list(sweep.space)
    conds = sorted(set(sweep.trials["condition"])) if len(sweep.trials) else []
    fig, axes = _grid(len(conds), len(names), w=3.2, h=2.6)
    for r, cond in enumerate(conds):
        rows = sweep.trials[sweep.trials["condition"] == cond]
        for c, name in enumerate(names):
            ax, spec = axes[r][c], sweep.space[name]
            col = f"params.{name}"
            values = rows[col] if col in rows else pd.Series(np.nan, index=rows.index)
            # As rnnsweep.search.space.suggest: neither int nor float is a categorical.
            categorical = spec.get("type") not in ("int", "float")
            cats = _categories(values, spec.get("choices")) if categorical else []
            for cell, sub in rows.groupby("tags.cell"):
                x = (values[sub.index].astype(str).map({v: i for i, v in enumerate(cats)})
                     if categorical else pd.to_numeric(values[sub.index], errors="coerce"))
                ok = x.notna() & np.isfinite(pd.to_numeric(sub["value"], errors="coerce"))
                if ok.any():
                    ax.scatter(x[ok].astype(float), sub["value"][ok], s=14, label=str(cell),
                               color=CELL_COLORS.get(str(cell)))
            if not ax.has_data():
                _note(ax, f"{cond}: no trial recorded {name}")
                continue
            if categorical:
                ax.set_xticks(range(len(cats)), cats)
            elif spec.get("log"):
                ax.set_xscale("log")
                _log_ticks(ax.xaxis, integer=spec.get("type") == "int")
            elif spec.get("type") == "int":
                ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
            else:
                ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=4))
            ax.set_xlabel(name)
            ax.set_title(cond, fontsize=8)
            ax.set_ylabel(sweep.metric, fontsize=8)
    _note_empty(axes, "no trials")
    first = next((ax for ax in np.ravel(axes) if ax.has_data()), None)
    if first is not None:
        _legend(first)
    return _save(fig, out / "slices.png")


# The cost panels: (column, scale, y label); the first of a panel's columns with data is drawn.
# Trials log seconds_per_step at every validation (pruned ones too); per-epoch seconds
# (epoch_seconds_mean, from an `epoch_seconds` curve) only where an older sweep logged them.
COST_PANELS = (
    ((("metrics.n_params", 1.0, "parameters"),)),
    (("metrics.seconds_per_step", 1000.0, "ms / optimiser step"),
     ("epoch_seconds_mean", 1.0, "seconds / epoch")),
    (("metrics.peak_memory_bytes", 1.0 / 2**20, "peak training memory (MiB)"),),
)


def _cost_scatter(ax: plt.Axes, trials: pd.DataFrame, col: str, scale: float) -> bool:
    """Each cell's trials, `col` x `scale` against the hidden size; True if any was drawn."""
    x_col = "metrics.hidden_size_used"
    if col not in trials or x_col not in trials:
        return False
    for cell, sub in trials.groupby("tags.cell"):
        x = pd.to_numeric(sub[x_col], errors="coerce")
        y = pd.to_numeric(sub[col], errors="coerce") * scale
        ok = (x > 0) & (y > 0)  # log axes: a missing (0 or NaN) value is not drawn
        if ok.any():
            ax.scatter(x[ok], y[ok], s=14, label=str(cell), color=CELL_COLORS.get(str(cell)))
    return ax.has_data()


def cost(trials: pd.DataFrame, device: str, out: Path) -> Path:
    """Parameters, milliseconds per optimiser step and peak memory against the hidden size,
    per cell and trial."""
    fig, axes = _grid(1, 3)
    for ax, panel in zip(axes[0], COST_PANELS, strict=True):
        drawn = next((label for col, scale, label in panel
                      if _cost_scatter(ax, trials, col, scale)), None)
        if drawn is None:
            _note(ax, f"{panel[0][2]}: not recorded by this sweep's trials")
            continue
        ax.set_xscale("log")
        ax.set_yscale("log")
        # Plain numbers: hidden sizes and costs span a decade or two, not many.
        _log_ticks(ax.xaxis, integer=True)
        _log_ticks(ax.yaxis)
        ax.set_xlabel("hidden size")
        ax.set_ylabel(drawn)
        _legend(ax)
    fig.suptitle(device, fontsize=9)
    return _save(fig, out / "cost.png")


def by_length(table: pd.DataFrame, axis: str, metric: str, out: Path) -> Path:
    """Test metric of the re-evaluated best configuration against sequence length."""
    fig, axes = _grid(1, 1, w=5.5)
    ax = axes[0][0]
    bounds = metric_range(metric)
    for (cell, size), rows in table.groupby(["cell", "size"]):
        rows = rows.sort_values("length")
        ax.errorbar(rows["length"], rows["mean"], yerr=_yerr(rows["mean"], rows["sd"], bounds),
                    marker="o", label=f"{cell} {size}", color=CELL_COLORS.get(str(cell)),
                    capsize=3, linestyle="-" if size == "large" else "--")
    if not ax.has_data():
        _note(ax, "no re-evaluation of any length")
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    _floor_ylim(ax, bounds)
    _legend(ax, outside=True)  # curves rise across the whole panel: no free corner
    return _save(fig, out / "by_length.png")


def data_size_curves(groups: dict, metric: str, out: Path) -> Path:
    """Per data group (other data keys): each cell's test metric against the number of
    training sequences on log-log axes (geometric mean per size with its 95 % t interval,
    and the fitted power law), and the eval-mode gap against the same axis. `groups` is
    rnnsweep.report.curves.curve_points."""
    fig, axes = _grid(len(groups), 2, w=5.5)
    for row, (rest, cells) in enumerate(sorted(groups.items())):
        loss_ax, gap_ax = axes[row]
        for cell, points in sorted(cells.items()):
            n = np.array([p.n for p in points])
            logs = [np.log(p.loss) for p in points]
            mean = np.array([np.exp(g.mean()) for g in logs])
            # 95 % t interval of the mean log loss, back on the loss scale (geometric mean)
            half = np.array([stats.t.ppf(0.975, g.size - 1) * g.std(ddof=1) / np.sqrt(g.size)
                             if g.size > 1 else 0.0 for g in logs])
            low, high = mean - mean * np.exp(-half), mean * np.exp(half) - mean
            color = CELL_COLORS.get(cell)
            loss_ax.errorbar(n, mean, yerr=[low, high], marker="o", linestyle="none",
                             capsize=3, color=color, label=f"{cell} (95% interval)")
            if len(points) >= 2:
                x = np.log(n)
                y = np.log(mean)
                b = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
                fit = np.exp(y.mean() + b * (x - x.mean()))
                loss_ax.plot(n, fit, "-", color=color, label=f"{cell} fit, n^{b:.2f}")
            if all(p.gap.size for p in points):
                gap_ax.errorbar(n, [p.gap.mean() for p in points],
                                yerr=[stats.t.ppf(0.975, p.gap.size - 1) * p.gap.std(ddof=1)
                                      / np.sqrt(p.gap.size) if p.gap.size > 1 else 0
                                      for p in points],
                                marker="o", capsize=3, color=color,
                                label=f"{cell} (mean, 95% interval)")
        title = f" ({rest})" if rest else ""
        sizes = sorted({p.n for points in cells.values() for p in points})
        for ax in (loss_ax, gap_ax):  # the measured sizes as ticks, no crowded minor labels
            ax.set_xscale("log")
            ax.set_xticks(sizes)
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        loss_ax.set_yscale("log")
        _log_ticks(loss_ax.yaxis)
        loss_ax.set_xlabel("training sequences")
        loss_ax.set_ylabel(f"{metric} (test set, re-evaluated)")
        loss_ax.set_title(f"test metric against data size{title}", fontsize=9)
        if gap_ax.has_data():
            gap_ax.axhline(0.0, color="grey", linewidth=0.5)
            gap_ax.set_xlabel("training sequences")
            gap_ax.set_ylabel("eval-mode gap (val - train loss)")
            gap_ax.set_title(f"overfitting against data size{title}", fontsize=9)
        else:
            _note(gap_ax, f"eval-mode gap{title}: not recorded at every size")
        # Beside the panels: points and fits span the whole panel, no corner stays free.
        _legend(loss_ax, outside=True)
        _legend(gap_ax, outside=True)
    _note_empty(axes, "no data size with two finished re-evaluation seeds")
    return _save(fig, out / "data_size_curves.png")
