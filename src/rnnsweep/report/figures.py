"""PNG figures of the report (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from rnnsweep.report.collect import Sweep  # noqa: E402
from rnnsweep.report.figure_style import (  # noqa: E402
    CELL_COLORS,
    clip,
    floor_ylim,
    grid,
    legend,
    log_ticks,
    metric_range,
    note,
    note_empty,
    save,
    yerr,
)


def learning_curves(sweep: Sweep, out: Path) -> Path:
    """Training (running and eval-mode) and validation loss per validation of each study's
    best trial, against the optimiser step."""
    parents = sweep.parents.sort_values(["condition", "tags.cell"])
    conds, cells = sorted(set(parents["condition"])), sorted(set(parents["tags.cell"]))
    fig, axes = grid(len(conds), len(cells))
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
            note(ax, "no loss curve recorded for the best trial")
            continue
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("loss")
        floor_ylim(ax, (0.0, None))
        legend(ax)
    note_empty(axes, "no study of this cell and condition")
    return save(fig, out / "learning_curves.png")


def overfitting(summary: pd.DataFrame, out: Path, metric: str | None = None) -> Path:
    """Eval-mode gap at the best validation and validation loss per cell and condition
    (mean +- sd over re-evaluation seeds). `metric`, the sweep's validation metric, names
    the second panel's axis and its range."""
    fig, axes = grid(1, 2, w=4.5)
    conds = sorted(set(summary["condition"]))
    cells = sorted(set(summary["cell"]))
    width = 0.8 / max(len(cells), 1)
    for col, (mean, sd, label) in enumerate((
        ("gap_eval_mean", "gap_eval_sd", "eval-mode gap (val - train loss)"),
        ("val_mean", "val_sd", f"best {metric or 'validation value'} (re-evaluated)"),
    )):
        ax = axes[0][col]
        if mean not in summary or not summary[mean].notna().any():
            note(ax, f"{label}: not recorded by this sweep's re-evaluations")
            continue
        # The gap is a difference (either sign); the validation values of every metric the
        # sweeps select on (losses, accuracies) are >= 0, so their error bars stop at 0.
        bounds = (None, None) if col == 0 else (
            metric_range(metric) if metric and metric_range(metric)[0] is not None
            else (0.0, None))
        for k, cell in enumerate(cells):
            rows = summary[summary["cell"] == cell].set_index("condition").reindex(conds)
            x = np.arange(len(conds)) + k * width
            ax.bar(x, rows[mean], width, yerr=yerr(rows[mean], rows[sd], bounds), label=cell,
                   color=CELL_COLORS.get(cell), capsize=3)
        ax.set_xticks(np.arange(len(conds)) + width * (len(cells) - 1) / 2, conds)
        ax.set_xlabel("data")
        ax.set_ylabel(label, fontsize=9)
        if col == 0:
            ax.axhline(0.0, color="grey", linewidth=0.5)
    # One legend for both panels (the same cells), beside the last: bars leave no free corner.
    legend(axes[0][1] if axes[0][1].has_data() else axes[0][0], outside=True)
    return save(fig, out / "overfitting.png")


def expected_best(curves: pd.DataFrame, metric: str, out: Path) -> Path:
    """Expected best validation value vs number of trials, +-1 sd band (clipped to the
    metric's range), per cell and sampler: solid for a random-search control (the valid
    curve), dashed otherwise."""
    conds = sorted(set(curves["condition"])) if len(curves) else []
    bounds = metric_range(metric)
    fig, axes = grid(1, len(conds))
    for i, cond in enumerate(conds):
        ax = axes[0][i]
        for (cell, sampler), rows in curves[curves["condition"] == cond].groupby(
                ["cell", "sampler"]):
            color = CELL_COLORS.get(str(cell))
            control = bool(rows["control"].iloc[0])
            ax.plot(rows["n_trials"], rows["expected"], marker="o", color=color,
                    label=f"{cell} ({sampler})", linestyle="-" if control else "--")
            sd = rows["sd"].fillna(0)
            ax.fill_between(rows["n_trials"], clip(rows["expected"] - sd, bounds),
                            clip(rows["expected"] + sd, bounds), alpha=0.2, color=color)
        ax.set_title(cond, fontsize=9)
        ax.set_xlabel("number of trials")
        ax.set_ylabel(f"expected best {metric}")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # trials are whole
        floor_ylim(ax, bounds)
        legend(ax)
    note_empty(axes, "no complete or pruned trial to draw from")
    return save(fig, out / "expected_best.png")


def importance(imp: pd.DataFrame, out: Path) -> Path:
    """fANOVA importance of each hyperparameter, one bar group per study."""
    fig, axes = grid(1, 1, w=8.0)
    ax = axes[0][0]
    if imp.empty:
        note(ax, "too few complete trials for fANOVA")
    else:
        table = imp.pivot_table(index="study", columns="parameter", values="importance")
        table.plot.barh(ax=ax, stacked=True)
        ax.set_xlabel("fANOVA importance (normalised)")
        legend(ax, outside=True)  # stacked bars fill the panel: no corner is free
    return save(fig, out / "importance.png")


def _categories(values: pd.Series, choices: list | None) -> list[str]:
    seen = [str(v) for v in values.dropna().unique()]
    listed = [str(c) for c in choices or []]
    return listed + sorted(v for v in seen if v not in listed)


def slices(sweep: Sweep, out: Path) -> Path:
    """Objective against each hyperparameter, every trial of every study (Optuna's slice
    plot, drawn per cell so the cells can be compared)."""
    names = list(sweep.space)
    conds = sorted(set(sweep.trials["condition"])) if len(sweep.trials) else []
    fig, axes = grid(len(conds), len(names), w=3.2, h=2.6)
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
                note(ax, f"{cond}: no trial recorded {name}")
                continue
            if categorical:
                ax.set_xticks(range(len(cats)), cats)
            elif spec.get("log"):
                ax.set_xscale("log")
                log_ticks(ax.xaxis, integer=spec.get("type") == "int")
            elif spec.get("type") == "int":
                ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
            else:
                ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=4))
            ax.set_xlabel(name)
            ax.set_title(cond, fontsize=8)
            ax.set_ylabel(sweep.metric, fontsize=8)
    note_empty(axes, "no trials")
    first = next((ax for ax in np.ravel(axes) if ax.has_data()), None)
    if first is not None:
        legend(first)
    return save(fig, out / "slices.png")


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
    fig, axes = grid(1, 3)
    for ax, panel in zip(axes[0], COST_PANELS, strict=True):
        drawn = next((label for col, scale, label in panel
                      if _cost_scatter(ax, trials, col, scale)), None)
        if drawn is None:
            note(ax, f"{panel[0][2]}: not recorded by this sweep's trials")
            continue
        ax.set_xscale("log")
        ax.set_yscale("log")
        # Plain numbers: hidden sizes and costs span a decade or two, not many.
        log_ticks(ax.xaxis, integer=True)
        log_ticks(ax.yaxis)
        ax.set_xlabel("hidden size")
        ax.set_ylabel(drawn)
        legend(ax)
    fig.suptitle(device, fontsize=9)
    return save(fig, out / "cost.png")


def by_length(table: pd.DataFrame, axis: str, metric: str, out: Path) -> Path:
    """Test metric of the re-evaluated best configuration against sequence length."""
    fig, axes = grid(1, 1, w=5.5)
    ax = axes[0][0]
    bounds = metric_range(metric)
    for (cell, size), rows in table.groupby(["cell", "size"]):
        rows = rows.sort_values("length")
        ax.errorbar(rows["length"], rows["mean"], yerr=yerr(rows["mean"], rows["sd"], bounds),
                    marker="o", label=f"{cell} {size}", color=CELL_COLORS.get(str(cell)),
                    capsize=3, linestyle="-" if size == "large" else "--")
    if not ax.has_data():
        note(ax, "no re-evaluation of any length")
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    floor_ylim(ax, bounds)
    legend(ax, outside=True)  # curves rise across the whole panel: no free corner
    return save(fig, out / "by_length.png")


def data_size_curves(groups: dict, metric: str, out: Path) -> Path:
    """Per data group (other data keys): each cell's test metric against the number of
    training sequences on log-log axes (geometric mean per size with its 95 % t interval,
    and the fitted power law), and the eval-mode gap against the same axis. `groups` is
    rnnsweep.report.curves.curve_points."""
    fig, axes = grid(len(groups), 2, w=5.5)
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
        log_ticks(loss_ax.yaxis)
        loss_ax.set_xlabel("training sequences")
        loss_ax.set_ylabel(f"{metric} (test set, re-evaluated)")
        loss_ax.set_title(f"test metric against data size{title}", fontsize=9)
        if gap_ax.has_data():
            gap_ax.axhline(0.0, color="grey", linewidth=0.5)
            gap_ax.set_xlabel("training sequences")
            gap_ax.set_ylabel("eval-mode gap (val - train loss)")
            gap_ax.set_title(f"overfitting against data size{title}", fontsize=9)
        else:
            note(gap_ax, f"eval-mode gap{title}: not recorded at every size")
        # Beside the panels: points and fits span the whole panel, no corner stays free.
        legend(loss_ax, outside=True)
        legend(gap_ax, outside=True)
    note_empty(axes, "no data size with two finished re-evaluation seeds")
    return save(fig, out / "data_size_curves.png")
