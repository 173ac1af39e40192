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
from rnnsweep.report.render import writing  # noqa: E402

CELL_COLORS = {"lstm": "tab:blue", "gru": "tab:orange", "rnn": "tab:green"}


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    try:
        with writing(path):
            fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)
    return path


def _legend(ax: plt.Axes) -> None:
    if ax.get_legend_handles_labels()[0]:  # an empty panel gets no (warning-raising) legend
        ax.legend(fontsize=7)


def _grid(n_rows: int, n_cols: int, w: float = 4.0, h: float = 3.0):
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(w * n_cols, h * n_rows), squeeze=False)
    return fig, axes


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
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=key,
                        color=CELL_COLORS.get(p["tags.cell"]))
        ax.set_title(f"{p['tags.cell']} / {p['condition']}", fontsize=9)
        ax.set_xlabel("optimiser step")
        _legend(ax)
    return _save(fig, out / "learning_curves.png")


def overfitting(summary: pd.DataFrame, out: Path) -> Path:
    """Eval-mode gap at the best validation and validation loss per cell and condition
    (mean +- sd over re-evaluation seeds)."""
    fig, axes = _grid(1, 2)
    conds = sorted(set(summary["condition"]))
    cells = sorted(set(summary["cell"]))
    width = 0.8 / max(len(cells), 1)
    for col, (mean, sd, title) in enumerate((
        ("gap_eval_mean", "gap_eval_sd", "eval-mode gap (val - train loss)"),
        ("val_mean", "val_sd", "best validation value"),
    )):
        ax = axes[0][col]
        for k, cell in enumerate(cells):
            rows = summary[summary["cell"] == cell].set_index("condition").reindex(conds)
            x = np.arange(len(conds)) + k * width
            ax.bar(x, rows[mean], width, yerr=rows[sd].fillna(0), label=cell,
                   color=CELL_COLORS.get(cell), capsize=3)
        ax.set_xticks(np.arange(len(conds)) + width * (len(cells) - 1) / 2, conds)
        ax.set_title(title, fontsize=9)
        _legend(ax)
    return _save(fig, out / "overfitting.png")


def expected_best(curves: pd.DataFrame, metric: str, out: Path) -> Path:
    """Expected best validation value vs number of trials, +-1 sd band, per cell and sampler:
    solid for a random-search control (the valid curve), dashed otherwise."""
    conds = sorted(set(curves["condition"]))
    fig, axes = _grid(1, len(conds))
    for i, cond in enumerate(conds):
        ax = axes[0][i]
        for (cell, sampler), rows in curves[curves["condition"] == cond].groupby(
                ["cell", "sampler"]):
            color = CELL_COLORS.get(str(cell))
            control = bool(rows["control"].iloc[0])
            ax.plot(rows["n_trials"], rows["expected"], marker="o", color=color,
                    label=f"{cell} ({sampler})", linestyle="-" if control else "--")
            ax.fill_between(rows["n_trials"], rows["expected"] - rows["sd"],
                            rows["expected"] + rows["sd"], alpha=0.2, color=color)
        ax.set_title(cond, fontsize=9)
        ax.set_xlabel("number of trials")
        ax.set_ylabel(f"expected best {metric}")
        _legend(ax)
    return _save(fig, out / "expected_best.png")


def importance(imp: pd.DataFrame, out: Path) -> Path:
    """fANOVA importance of each hyperparameter, one bar group per study."""
    fig, axes = _grid(1, 1, w=7.0)
    ax = axes[0][0]
    if imp.empty:
        ax.text(0.5, 0.5, "too few complete trials for fANOVA", ha="center")
    else:
        table = imp.pivot_table(index="study", columns="parameter", values="importance")
        table.plot.barh(ax=ax, stacked=True)
        ax.set_xlabel("fANOVA importance (normalised)")
        _legend(ax)
    return _save(fig, out / "importance.png")


def slices(sweep: Sweep, out: Path) -> Path:
    """Objective against each hyperparameter, every trial of every study (Optuna's slice
    plot, drawn per cell so the cells can be compared)."""
    names = list(sweep.space)
    conds = sorted(set(sweep.trials["condition"])) if len(sweep.trials) else []
    fig, axes = _grid(max(len(conds), 1), len(names), w=3.2, h=2.6)
    for r, cond in enumerate(conds):
        rows = sweep.trials[sweep.trials["condition"] == cond]
        for c, name in enumerate(names):
            ax = axes[r][c]
            for cell, sub in rows.groupby("tags.cell"):
                x = pd.to_numeric(sub.get(f"params.{name}"), errors="coerce")
                ax.scatter(x, sub["value"], s=14, label=str(cell),
                           color=CELL_COLORS.get(str(cell)))
            if sweep.space[name].get("log"):
                ax.set_xscale("log")
            ax.set_xlabel(name)
            ax.set_title(cond, fontsize=8)
            ax.set_ylabel(sweep.metric, fontsize=8)
    _legend(axes[0][0])
    return _save(fig, out / "slices.png")


def cost(trials: pd.DataFrame, device: str, out: Path) -> Path:
    """Parameters, seconds per epoch and peak memory against the hidden size, per cell."""
    fig, axes = _grid(1, 3)
    cols = (("metrics.n_params", "parameters"), ("epoch_seconds_mean", "seconds / epoch"),
            ("metrics.peak_memory_bytes", "peak training memory (bytes)"))
    for ax, (col, label) in zip(axes[0], cols, strict=True):
        shown = False
        for cell, sub in trials.groupby("tags.cell"):
            if col in sub and "metrics.hidden_size_used" in sub:
                x, y = sub["metrics.hidden_size_used"], sub[col]
                ok = (x > 0) & (y > 0)
                shown |= bool(ok.any())
                ax.scatter(x[ok], y[ok], s=14, label=str(cell), color=CELL_COLORS.get(str(cell)))
        if shown:
            ax.set_xscale("log")
            ax.set_yscale("log")
            # Plain numbers: hidden sizes span one or two decades, not many.
            ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("hidden size")
        ax.set_title(label, fontsize=9)
        _legend(ax)
    fig.suptitle(device, fontsize=9)
    return _save(fig, out / "cost.png")


def by_length(table: pd.DataFrame, axis: str, metric: str, out: Path) -> Path:
    """Test metric of the re-evaluated best configuration against sequence length."""
    fig, axes = _grid(1, 1)
    ax = axes[0][0]
    for (cell, size), rows in table.groupby(["cell", "size"]):
        rows = rows.sort_values("length")
        ax.errorbar(rows["length"], rows["mean"], yerr=rows["sd"].fillna(0), marker="o",
                    label=f"{cell} {size}", color=CELL_COLORS.get(str(cell)), capsize=3,
                    linestyle="-" if size == "large" else "--")
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    _legend(ax)
    return _save(fig, out / "by_length.png")


def data_size_curves(groups: dict, metric: str, out: Path) -> Path:
    """Per data group (other data keys): each cell's test metric against the number of
    training sequences on log-log axes (geometric mean per size with its 95 % t interval,
    and the fitted power law), and the eval-mode gap against the same axis. `groups` is
    rnnsweep.report.curves.curve_points."""
    fig, axes = _grid(max(len(groups), 1), 2)
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
        loss_ax.set_xlabel("training sequences")
        loss_ax.set_ylabel(f"{metric} (test set, re-evaluated)")
        loss_ax.set_title(f"test metric against data size{title}", fontsize=9)
        gap_ax.axhline(0.0, color="grey", linewidth=0.5)
        gap_ax.set_xlabel("training sequences")
        gap_ax.set_ylabel("eval-mode gap (val - train loss)")
        gap_ax.set_title(f"overfitting against data size{title}", fontsize=9)
        _legend(loss_ax)
        _legend(gap_ax)
    return _save(fig, out / "data_size_curves.png")
