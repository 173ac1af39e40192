"""The report's figures and page, looked at: every figure checked as matplotlib drew it, and
report.html opened in a real headless Chromium.

The report is the real command's (`python -m rnnsweep.report` over the session's smoke
sweep), run with one addition: rnnsweep.report.figures.save first hands each Figure to
`figure_problems` (below), which writes what it finds next to the report. So every figure the
real report makes is checked, with its real data, before it is flattened into a PNG, where
empty panels, overlapping tick labels or a legend over the bars can no longer be told apart.
The figure functions the smoke sweep does not reach (data-size curves, sequence length) are
checked on small made-up inputs.

The browser half follows tests/test_ui_browser.py: Debian's chromium driven by Playwright,
skipped without them, a failure without them under CI.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import clean_env  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402
from matplotlib.backend_bases import RendererBase  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

TESTS = Path(__file__).resolve().parent
VIEWPORTS = [(1280, 800), (1920, 1080)]
TIMEOUT_MS = 60_000
# Pixels two tick labels may share before they read as one smudge (antialiasing slack).
OVERLAP_PX = 1.0


# -- what a figure must show ---------------------------------------------------------------

def _bounds(label: str) -> tuple[float | None, float | None]:
    """The range of the quantity an axis label names: losses are >= 0, accuracies within
    [0, 1]. A gap (a difference of losses) may be negative: no bound."""
    text = label.lower()
    if "gap" in text or " - " in text:
        return None, None
    if "acc" in text:
        return 0.0, 1.0
    if "loss" in text:
        return 0.0, None
    return None, None


def _data_points(ax: Axes) -> np.ndarray:
    """Every plotted point in data coordinates (n x 2; NaN where a value is missing): line
    vertices, scatter offsets, band and error-bar vertices and bar corners. Reference lines
    drawn in axes coordinates (axhline) are not data."""
    pts: list[np.ndarray] = [np.empty((0, 2))]
    for line in ax.lines:
        if line.get_visible() and line.get_transform() is ax.transData:
            xy = np.asarray(line.get_xydata(), float).reshape(-1, 2)
            # A line without markers through one point draws nothing at all.
            if line.get_marker() not in ("", "None", " ", None) or len(
                    xy[np.isfinite(xy).all(axis=1)]) >= 2:
                pts.append(xy)
    for coll in ax.collections:
        if not coll.get_visible():
            continue
        offsets = np.ma.filled(np.ma.asarray(coll.get_offsets(), float), np.nan).reshape(-1, 2)
        if len(offsets) and coll.get_offset_transform() is ax.transData:
            pts.append(offsets)
        if coll.get_transform() is ax.transData:
            pts += [np.asarray(p.vertices, float).reshape(-1, 2) for p in coll.get_paths()]
    for patch in ax.patches:
        if patch.get_visible() and patch.get_transform().contains_branch(ax.transData):
            box = patch.get_bbox()
            if box.width and box.height:
                pts.append(np.array([[box.x0, box.y0], [box.x1, box.y1]], float))
    return np.concatenate(pts)


def _in_view(ax: Axes, pts: np.ndarray) -> np.ndarray:
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    with np.errstate(invalid="ignore"):
        return (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)


def _tick_labels(axis: Axis) -> list[Text]:
    """The non-empty tick labels drawn inside the axis's view (major and minor)."""
    lo, hi = sorted(axis.get_view_interval())
    slack = 1e-9 * max(abs(lo), abs(hi), 1.0)
    out = []
    for locs, ticks in ((axis.get_majorticklocs(), axis.get_major_ticks()),
                        (axis.get_minorticklocs(), axis.get_minor_ticks())):
        for loc, tick in zip(locs, ticks, strict=False):
            label = tick.label1
            if (lo - slack <= loc <= hi + slack and tick.get_visible() and label.get_visible()
                    and label.get_text().strip()):
                out.append(label)
    return out


def _numeric(text: str) -> bool:
    """'0.25', '−0.1', '1e-3', '$\\mathdefault{2\\times10^{3}}$': a number, not a category."""
    bare = re.sub(r"\\mathdefault|\\times|[${}\s]", "", text).replace("\N{MINUS SIGN}", "-")
    return bool(re.fullmatch(r"[-+0-9.eE^×%]+", bare))


def _overlaps(a: Bbox, b: Bbox, slack: float = OVERLAP_PX) -> bool:
    if not (np.isfinite(a.extents).all() and np.isfinite(b.extents).all()):
        return False  # a bar of a missing value (NaN height) is not drawn
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w > slack and h > slack


def _axis_problems(ax: Axes, axis: Axis, name: str, renderer: RendererBase) -> list[str]:
    labels = _tick_labels(axis)
    texts = [t.get_text() for t in labels]
    categorical = bool(texts) and not any(_numeric(t) for t in texts)
    problems = []
    if not axis.get_label_text().strip() and not categorical:
        problems.append(f"no {name} label (and its ticks name no categories)")
    if len(labels) < (1 if categorical else 2):
        problems.append(f"{len(labels)} {name} tick label(s): {texts}")
    boxes = [t.get_window_extent(renderer) for t in labels]
    for (i, a), (j, b) in combinations(enumerate(boxes), 2):
        if _overlaps(a, b):
            problems.append(f"{name} tick labels {texts[i]!r} and {texts[j]!r} overlap")
            break
    return problems


def _legend_problems(ax: Axes, renderer: RendererBase) -> list[str]:
    """A legend that hides data: over a bar, or over a plotted point (line vertex, marker,
    error-bar end). Bands (fill_between) may pass under it: they span the whole panel."""
    legend = ax.get_legend()
    if legend is None or not legend.get_visible():
        return []
    box = legend.get_window_extent(renderer)
    problems = []
    for patch in ax.patches:
        if patch.get_visible() and _overlaps(box, patch.get_window_extent(renderer), 0.0):
            problems.append("the legend covers a bar")
            break
    pts = []
    for line in ax.lines:
        if line.get_visible() and line.get_transform() is ax.transData:
            pts.append(np.asarray(line.get_xydata(), float).reshape(-1, 2))
    for coll in ax.collections:
        offsets = np.ma.filled(np.ma.asarray(coll.get_offsets(), float), np.nan).reshape(-1, 2)
        if coll.get_visible() and len(offsets) and coll.get_offset_transform() is ax.transData:
            pts.append(offsets)
        elif coll.get_visible() and coll.get_transform() is ax.transData and not (
                coll.get_facecolor().size and coll.get_facecolor()[:, 3].max() < 1):
            # error-bar segments (opaque line collections); translucent bands pass
            pts += [np.asarray(p.vertices, float).reshape(-1, 2) for p in coll.get_paths()]
    if pts:
        data = np.concatenate(pts)
        data = data[np.isfinite(data).all(axis=1)]
        shown = ax.transData.transform(data)[_in_view(ax, data)] if len(data) else data
        inside = ((shown[:, 0] > box.x0) & (shown[:, 0] < box.x1)
                  & (shown[:, 1] > box.y0) & (shown[:, 1] < box.y1))
        if inside.any():
            problems.append(f"the legend covers {int(inside.sum())} plotted point(s)")
    return problems


def figure_problems(fig: Figure) -> list[str]:
    """What is wrong with a figure as drawn (an empty list when nothing is): per panel, its
    data (or a visible note saying why there is none), axis labels, readable tick labels,
    a legend clear of the data, and values within the range the y label's quantity has."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    visible = [ax for ax in fig.axes if ax.get_visible()]
    if not visible:
        problems.append("no panel")
    for k, ax in enumerate(visible):
        where = f"panel {k} ({ax.get_title() or ax.get_ylabel() or 'untitled'})"
        pts = _data_points(ax)
        finite = pts[np.isfinite(pts).all(axis=1)]
        shown = finite[_in_view(ax, finite)]
        notes = [t for t in ax.texts if t.get_visible() and t.get_text().strip()]
        if not len(shown) and not ax.images:
            if not notes:
                problems.append(f"{where}: empty, and no note says why")
            elif ax.axison:
                problems.append(f"{where}: a note-only panel still draws empty axes")
            continue
        found = [*_axis_problems(ax, ax.xaxis, "x", renderer),
                 *_axis_problems(ax, ax.yaxis, "y", renderer),
                 *_legend_problems(ax, renderer)]
        low, high = _bounds(ax.get_ylabel())
        if low is not None and (finite[:, 1] < low - 1e-12).any():
            found.append(f"values below {low} for {ax.get_ylabel()!r}: "
                         f"min {finite[:, 1].min():.3g}")
        if low is not None and ax.get_yscale() == "linear" and min(ax.get_ylim()) < low:
            found.append(f"y axis reaches {min(ax.get_ylim()):.3g}, below {low}")
        if high is not None and (finite[:, 1] > high + 1e-12).any():
            found.append(f"values above {high} for {ax.get_ylabel()!r}")
        problems += [f"{where}: {p}" for p in found]
    return problems


# -- the hook: the real report command, each figure checked before it is saved --------------

HOOK = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from rnnsweep.report import figures
from rnnsweep.report.__main__ import main
from test_report_browser import figure_problems
log, save = Path({log!r}), figures.save
found = {{}}

def checked(fig, path):
    fig.tight_layout()  # the layout save gives it, before looking
    found[Path(path).name] = figure_problems(fig)
    log.write_text(json.dumps(found, indent=1))
    return save(fig, path)

figures.save = checked
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def checked_report(smoke_sweep: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[Path, dict[str, list[str]]]:
    """The smoke sweep's report as `python -m rnnsweep.report` writes it (not attached:
    the MLflow store stays as the other report tests expect it), and per figure file what
    figure_problems found."""
    log = tmp_path_factory.mktemp("figure-checks") / "problems.json"
    out = tmp_path_factory.mktemp("report")
    code = HOOK.format(tests=str(TESTS), log=str(log))
    proc = subprocess.run([sys.executable, "-c", code, "report.attach=false",
                           f"report.out_dir={out}"], cwd=smoke_sweep, env=clean_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "adding", json.loads(log.read_text())


def test_every_figure_of_the_report_shows_something(
        checked_report: tuple[Path, dict[str, list[str]]]) -> None:
    report, found = checked_report
    pngs = {p.name for p in (report / "figures").glob("*.png")}
    assert set(found) == pngs and len(pngs) >= 6  # every saved figure was looked at
    assert {name: p for name, p in found.items() if p} == {}


@pytest.fixture
def checked_figures(monkeypatch) -> dict[str, list[str]]:
    """figures.save, with each figure's problems recorded by file name first."""
    from rnnsweep.report import figures

    seen: dict[str, list[str]] = {}
    save = figures.save

    def checked(fig: Figure, path: Path) -> Path:
        fig.tight_layout()
        seen[Path(path).name] = figure_problems(fig)
        return save(fig, path)

    monkeypatch.setattr(figures, "save", checked)
    return seen


def test_figures_the_smoke_sweep_does_not_make(checked_figures: dict[str, list[str]],
                                              tmp_path: Path) -> None:
    """Data-size curves and test metric against sequence length, on made-up numbers shaped
    like rnnsweep.report.curves.curve_points and tables.by_length."""
    from rnnsweep.report import figures
    from rnnsweep.report.curves import Point

    rng = np.random.default_rng(0)
    groups = {"": {cell: [Point(f"{n}", float(n), np.exp(rng.normal(np.log(scale / n**0.3),
                                                                     0.1, 3)),
                                rng.normal(0.05 / n**0.2, 0.01, 3))
                          for n in (100, 250, 500, 1000, 2000)]
                   for cell, scale in (("lstm", 1.0), ("gru", 0.8))}}
    figures.data_size_curves(groups, "test_loss", tmp_path)
    lengths = pd.DataFrame([{"cell": c, "size": s, "length": t, "mean": m, "sd": m / 2, "n": 3}
                            for c in ("lstm", "gru") for s in ("small", "large")
                            for t, m in ((20, 0.01), (50, 0.05), (100, 0.2))])
    figures.by_length(lengths, "data.T", "test_loss", tmp_path)
    assert set(checked_figures) == {"data_size_curves.png", "by_length.png"}
    assert {name: p for name, p in checked_figures.items() if p} == {}


@pytest.mark.slow  # trains or runs a study in-process for seconds
def test_figures_of_a_sparse_sweep(checked_figures: dict[str, list[str]],
                                   tmp_path: Path) -> None:
    """What a smaller or older sweep gives the figures: a cell run in one condition only, no
    timing or memory recorded, a categorical parameter and one never recorded, no gap, too
    few trials for fANOVA, and a small loss whose +-sd band and error bars would cross 0.
    Every panel still shows data or says why not; no band goes below 0."""
    from rnnsweep.report import figures
    from rnnsweep.report.collect import Sweep

    space = {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
             "hidden_size": {"type": "int", "low": 8, "high": 512, "log": True},
             "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
             "dropout": {"type": "float", "low": 0.0, "high": 0.5}}
    studies = [("lstm", "small"), ("lstm", "large"), ("gru", "small")]
    parents = pd.DataFrame({"tags.cell": [c for c, _ in studies],
                            "condition": [d for _, d in studies],
                            "tags.best_trial_run_id": [f"{c}-{d}-0" for c, d in studies]})
    rng = np.random.default_rng(1)
    trials = pd.DataFrame([{
        "run_id": f"{c}-{d}-{k}", "tags.cell": c, "condition": d, "value": 0.01 * (1 + k),
        "params.lr": f"{10 ** rng.uniform(-4, -1):.3g}", "params.optimizer": ["adam", "sgd"][k % 2],
        "params.hidden_size": str(int(2 ** rng.uniform(3, 9))),
        "metrics.hidden_size_used": float(2 ** (3 + k)), "metrics.n_params": 4.0 ** (3 + k),
    } for c, d in studies for k in range(4)])
    curves = {f"{c}-{d}-0": {"train_loss": [(10, 0.5), (20, 0.2)], "val_loss": [(10, 0.4)]}
              for c, d in studies[:2]}  # gru's best trial logged no curve
    sweep = Sweep(experiment="adding", sweep_id="x", metric="val_loss", direction="minimize",
                  space=space, parents=parents, trials=trials, reevals=pd.DataFrame(),
                  curves=curves)
    figures.learning_curves(sweep, tmp_path)
    figures.slices(sweep, tmp_path)
    figures.cost(trials, "cpu", tmp_path)
    figures.importance(pd.DataFrame(), tmp_path)
    summary = pd.DataFrame({"cell": [c for c, _ in studies], "condition": [d for _, d in studies],
                            "gap_eval_mean": np.nan, "gap_eval_sd": np.nan,
                            "val_mean": 0.01, "val_sd": 0.05})
    figures.overfitting(summary, tmp_path, "val_loss")
    figures.expected_best(pd.DataFrame({
        "condition": "small", "cell": "lstm", "sampler": "random", "control": True,
        "n_trials": [1, 2, 3], "expected": [0.03, 0.02, 0.01], "sd": [0.05, 0.04, 0.03]}),
        "val_loss", tmp_path)
    assert len(checked_figures) == 6
    assert {name: p for name, p in checked_figures.items() if p} == {}


@pytest.mark.parametrize("hidden", [[13, 14, 15, 17], [8, 64, 512, 4096], [16, 16, 16, 16]],
                         ids=["within-a-decade", "three-decades", "one-size"])
def test_log_axes_keep_readable_ticks(checked_figures: dict[str, list[str]], tmp_path: Path,
                                      hidden: list[int]) -> None:
    """The cost panels' log axes over a range with no 1-2-5 value in it, over several
    decades, and over a single hidden size: at least two labelled, separate ticks."""
    from rnnsweep.report import figures

    trials = pd.DataFrame({"tags.cell": ["lstm", "lstm", "gru", "gru"],
                           "metrics.hidden_size_used": hidden,
                           "metrics.n_params": [4.0 * h * h for h in hidden],
                           "metrics.seconds_per_step": [1e-3 * h for h in hidden],
                           "metrics.peak_memory_bytes": [2.0**10 * h for h in hidden]})
    figures.cost(trials, "cpu", tmp_path)
    assert checked_figures == {"cost.png": []}


def test_the_checks_catch_what_they_are_for() -> None:
    """An empty panel, a numeric axis with no label, overlapping ticks, a legend over bars
    and a loss band below zero: each one named."""
    fig, axes = plt.subplots(1, 4, figsize=(12, 3))
    axes[0].plot([1], [1], "-")  # one point, no marker: nothing drawn
    axes[1].plot([0, 1], [2, 3])  # no labels
    axes[2].bar(["a", "b"], [1, 2], label="bars")
    axes[2].legend(loc="center", fontsize=30)
    axes[2].set_ylabel("y")
    axes[3].fill_between([0, 1], [-0.1, 0.1], [0.2, 0.3])
    axes[3].set_xticks(np.linspace(0, 1, 30), [f"{v:.4f}" for v in np.linspace(0, 1, 30)])
    axes[3].set_xlabel("x")
    axes[3].set_ylabel("expected best val_loss")
    found = "\n".join(figure_problems(fig))
    plt.close(fig)
    for expected in ("panel 0 (untitled): empty", "no x label", "no y label",
                     "the legend covers a bar", "x tick labels '0.0000' and '0.0345' overlap",
                     "values below 0.0 for 'expected best val_loss'"):
        assert expected in found, found


# -- the page in a browser -------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator:
    from test_ui_browser import CHROMIUM_ARGS, chromium_path, playwright_api

    sync_api = playwright_api()
    executable = chromium_path()
    with sync_api.sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        context.close()


# Per table: its right edge, and whether an ancestor up to <body> scrolls it sideways.
TABLES_JS = """() => [...document.querySelectorAll('table')].map(t => {
  let scrolls = false;
  for (let e = t.parentElement; e && e !== document.body; e = e.parentElement) {
    const s = getComputedStyle(e);
    if ((s.overflowX === 'auto' || s.overflowX === 'scroll')
        && e.getBoundingClientRect().right <= document.documentElement.clientWidth) {
      scrolls = true; break;
    }
  }
  return {right: t.getBoundingClientRect().right, scrolls,
          head: t.rows[0] ? t.rows[0].innerText.slice(0, 60) : ''};
})"""
IMAGES_JS = """() => [...document.images].map(i => ({
  alt: i.alt, complete: i.complete, natural: i.naturalWidth,
  right: i.getBoundingClientRect().right, width: i.getBoundingClientRect().width}))"""


def _not_one_colour(png: Path) -> bool:
    pixels = matplotlib.image.imread(png)
    return bool(pixels.size) and bool((pixels != pixels.reshape(-1, pixels.shape[-1])[0]).any())


@pytest.mark.parametrize(("width", "height"), VIEWPORTS, ids=lambda v: str(v))
def test_report_page_fits_the_window(browser, checked_report: tuple[Path, dict],
                                     width: int, height: int, tmp_path: Path) -> None:
    report, _ = checked_report
    page = browser.new_page()  # a persistent context's pages take their size afterwards
    page.set_viewport_size({"width": width, "height": height})
    try:
        page.goto((report / "report.html").as_uri())
        page.wait_for_load_state("load")
        view = page.evaluate("() => document.documentElement.clientWidth")
        images = page.evaluate(IMAGES_JS)
        assert len(images) == len(list((report / "figures").glob("*.png")))
        for img in images:
            assert img["complete"] and img["natural"] > 0, img
            assert img["right"] <= view + 0.5, (img, view)
        tables = page.evaluate(TABLES_JS)
        assert tables
        for table in tables:
            assert table["scrolls"] or table["right"] <= view + 0.5, (table, view)
        scroll = page.evaluate("() => [document.documentElement.scrollWidth,"
                               " document.documentElement.clientWidth]")
        assert scroll[0] <= scroll[1], f"the page scrolls sideways: {scroll}"
        figures = page.locator("figure")
        assert figures.count() == len(images)
        for k in range(figures.count()):
            shot = tmp_path / f"figure-{k}.png"
            figures.nth(k).screenshot(path=shot)
            assert _not_one_colour(shot), f"{shot}: one colour ({images[k]['alt']})"
        page.screenshot(path=tmp_path / "page.png", full_page=True)
    finally:
        page.close()
