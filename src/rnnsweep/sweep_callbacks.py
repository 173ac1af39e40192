"""End of a `-m` sweep: one table of every study it ran, and what to do next.

Jobs may have run in other processes (hydra/launcher=joblib) or on other machines, so the
table is read back from MLflow by the sweep's `sweep_id` tag, not from this process's state.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich import box
from rich.console import Console
from rich.table import Table

from rnnsweep.data.fitted_baselines import LABELS, best_fitted
from rnnsweep.data.sizes import curve_point
from rnnsweep.redact import redact

log = logging.getLogger(__name__)
PACKAGE_DIR = str(Path(__file__).resolve().parent)  # rnnsweep's own frames
STUDY_ROLE = "study"


def headline_metric(loss_kind: str) -> str:
    """The test metric a loss kind's headline reads; test_loss for an unknown kind."""
    from rnnsweep.losses import headline_metric as of_kind  # torch: once a sweep has run

    return of_kind(loss_kind) or "test_loss"


@dataclass
class StudyRow:
    task: str
    data_size: str
    cell: str
    study_name: str
    status: str
    best_value: float | None
    best_params: dict[str, str] = field(default_factory=dict)
    n_complete: int = 0
    n_pruned: int = 0
    n_failed: int = 0
    wall_seconds: float | None = None  # the search's trials, over all of the study's jobs
    # search + re-evaluation seeds + seed rounds: the study's own compute (MLflow's Duration)
    study_seconds: float | None = None
    # The trivial predictor's validation loss; for classification ("ce") the best trial's
    # test accuracy beside the majority-class rate, so a loss is read against what is free.
    trivial_loss: float | None = None
    loss_kind: str = ""
    majority_acc: float | None = None
    # The headline, as the report has it: the mean over the re-evaluation seeds of the best
    # configuration (test_acc for classification, else test_loss), and their number.
    reeval_test: float | None = None
    reeval_n: int = 0
    # The best fitted non-recurrent baseline on the headline's metric (test set): its model
    # and value, e.g. ("1nn", 0.969); None when the parent has none recorded.
    fitted: tuple[str, float] | None = None
    # The MLflow experiment, which names the report's folder (reports/<experiment>/).
    experiment: str = ""
    # Which independent search of the cell and size (search.repeats; tag search_repeat).
    repeat: int = 0
    # The dataset's condition (tags data.<key>: the task's own keys, e.g. T, n, noise).
    condition: dict[str, str] = field(default_factory=dict)

    @property
    def headline_metric(self) -> str:
        """The test metric the headline reads: the loss kind's (test_acc for classes)."""
        return headline_metric(self.loss_kind)


def read_sweep(tracking_uri: str, sweep_id: str, metric: str) -> list[StudyRow]:
    """Every study parent run tagged with this sweep id, in any experiment."""
    from mlflow.tracking import MlflowClient

    from rnnsweep.tracking import tag_filter

    client = MlflowClient(tracking_uri=tracking_uri)
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    if not names:
        return []
    runs = client.search_runs(
        list(names),
        filter_string=tag_filter({"sweep_id": sweep_id, "role": STUDY_ROLE})[0],
        max_results=10000,
    )
    rows = []
    for run in runs:
        tags, metrics, info = run.data.tags, run.data.metrics, run.info
        kind = tags.get("loss_kind", "")
        test_metric = headline_metric(kind)
        headline = f"reeval_{test_metric}_mean"
        rows.append(StudyRow(
            task=tags.get("task", "?"),
            data_size=tags.get("data_size", "?"),
            cell=tags.get("cell", "?"),
            study_name=tags.get("study_name", info.run_name or ""),
            status=info.status,
            best_value=metrics.get(f"best_{metric}"),
            best_params={k[len("best."):]: v for k, v in tags.items() if k.startswith("best.")},
            n_complete=int(metrics.get("n_complete", 0)),
            n_pruned=int(metrics.get("n_pruned", 0)),
            n_failed=int(metrics.get("n_failed", 0)),
            wall_seconds=metrics.get("search_seconds"),
            study_seconds=metrics.get("study_seconds"),
            trivial_loss=metrics.get("baseline_loss"),
            loss_kind=kind,
            majority_acc=metrics.get("baseline_acc"),
            reeval_test=metrics.get(headline),
            reeval_n=int(metrics.get("reeval_n", 0)),
            fitted=best_fitted(metrics, test_metric, maximize=test_metric == "test_acc"),
            experiment=names.get(info.experiment_id, tags.get("task", "?")),
            repeat=int(tags.get("search_repeat") or 0),
            condition={k[len("data."):]: v for k, v in tags.items() if k.startswith("data.")},
        ))
    size_order = {"small": 0, "large": 1}

    def size_key(size: str) -> tuple[int, float, str]:  # curve sizes in numeric order
        point = curve_point(size)
        return (size_order.get(size, 2), point if point is not None else 0.0, size)

    rows.sort(key=lambda r: (r.task, size_key(r.data_size), r.study_name))
    return rows


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() and "." not in value else f"{number:.3g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def condition_labels(rows: list[StudyRow]) -> list[str]:
    """Per row, the condition keys that vary within its task and data size (e.g. "T=40" in a
    sweep over data.seq_len), so rows of different conditions read apart; "" when none do."""
    values: dict[tuple[str, str, str], set[str]] = {}
    for r in rows:
        for k, v in r.condition.items():
            values.setdefault((r.task, r.data_size, k), set()).add(v)
    varying = {(task, k) for (task, _, k), vs in values.items() if len(vs) > 1}
    return [" ".join(f"{k}={v}" for k, v in r.condition.items() if (r.task, k) in varying)
            for r in rows]


def summary_table(rows: list[StudyRow], metric: str, direction: str) -> Table:
    """Cell x data size (and condition, where a sweep varies one); the best value of each
    (task, data size, condition) group is marked with *."""
    pick = min if direction == "minimize" else max
    labels = condition_labels(rows)
    winners: dict[tuple[str, str, str], float] = {}
    for r, label in zip(rows, labels, strict=True):
        if r.best_value is not None:
            key = (r.task, r.data_size, label)
            winners[key] = pick(winners.get(key, r.best_value), r.best_value)
    table = Table(title="Sweep summary", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("task", "data", "cell"):
        table.add_column(name)
    table.add_column(f"best trial {metric}", justify="right")
    table.add_column("trivial loss (val)", justify="right")
    classification = any(r.headline_metric == "test_acc" for r in rows)
    table.add_column("test acc, re-eval (majority)" if classification else "test loss, re-eval",
                     justify="right", no_wrap=True)
    table.add_column("best hyperparameters", no_wrap=True)
    table.add_column("finished (pruned)", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("time search/study", justify="right")
    for r, label in zip(rows, labels, strict=True):
        if r.best_value is None:
            best = "-"
        else:
            mark = " *" if winners.get((r.task, r.data_size, label)) == r.best_value else ""
            best = f"{r.best_value:.4g}{mark}"
        params = " ".join(f"{k}={_short(v)}" for k, v in sorted(r.best_params.items()))
        if r.status != "FINISHED":
            params = f"[{r.status}] {params}".strip()
        trivial = "-" if r.trivial_loss is None else f"{r.trivial_loss:.4g}"
        if r.reeval_test is None:
            test = "-"
        else:
            test = f"{r.reeval_test:.3g} (n={r.reeval_n})"
            if classification and r.majority_acc is not None:
                test = f"{r.reeval_test:.3g} ({r.majority_acc:.3g}, n={r.reeval_n})"
        # A repeat's row says which search it is: the cell and size repeat on its rows.
        cell = f"{r.cell} r{r.repeat}" if r.repeat else r.cell
        table.add_row(
            r.task, f"{r.data_size} {label}".rstrip(), cell, best, trivial, test, params,
            f"{r.n_complete + r.n_pruned} ({r.n_pruned})", str(r.n_failed),
            f"{_duration(r.wall_seconds)}/{_duration(r.study_seconds)}",
        )
    return table


def fitted_lines(rows: list[StudyRow]) -> list[str]:
    """One line per task and data size: the best fitted non-recurrent baseline on the test
    column's metric, and whether any cell beats it (a column would repeat it on every row
    and squeeze the table past 160 characters)."""
    groups: dict[tuple[str, str], list[StudyRow]] = {}
    for r, label in zip(rows, condition_labels(rows), strict=True):
        groups.setdefault((r.task, f"{r.data_size} {label}".rstrip()), []).append(r)
    lines = []
    for (task, size), members in groups.items():
        fitted = next((r.fitted for r in members if r.fitted), None)
        if fitted is None:
            continue
        model, value = fitted
        maximize = members[0].headline_metric == "test_acc"  # accuracy, else a loss
        tests = [r.reeval_test for r in members if r.reeval_test is not None]
        beaten = any(t > value if maximize else t < value for t in tests)
        verdict = ("" if not tests else ", a cell beats it" if beaten
                   else ", no cell beats it")
        metric = "test acc" if maximize else "test loss"
        lines.append(f"{task} {size} {LABELS[model]} {metric} {value:.3g}{verdict}")
    return lines


def next_steps(experiments: list[str]) -> list[str]:
    lines = ["make ui          # browse studies and trials: MLflow UI on http://127.0.0.1:5000"]
    lines.append("make dashboard   # Optuna dashboard: history, importances, slices per study")
    reports = (", ".join(f"reports/{e}/report.md" for e in experiments)
               or "reports/<task>/report.md")
    lines.append(f"make report      # the comparison report: {reports}")
    return lines


def print_summary(
    rows: list[StudyRow], metric: str, direction: str, console: Console | None = None
) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # log files: no 80-column wrapping of the table
            console = Console(width=160)
    if not rows:
        console.print("No study of this sweep was found in MLflow.")
        return
    console.print(summary_table(rows, metric, direction))
    console.print("* best of its task and data size (and condition, where the sweep varies "
                  "one). Test: the mean over the re-evaluation "
                  "seeds of each study's best configuration (n seeds), the report's headline; "
                  "trivial: the mean or class-prior prediction's validation loss; "
                  "the best trial's value is a selection statistic. Time: the search's trials "
                  "over all the study's jobs / the study's own compute (search, re-evaluation "
                  "seeds and seed rounds; MLflow's Duration), never the sweep's span.",
                  highlight=False)
    fitted = fitted_lines(rows)
    if fitted:
        console.print("Best fitted baseline (a linear model or 1-NN on the same split, scored "
                      "on the test set like the test column): " + "; ".join(fitted) + ".",
                      highlight=False)
    console.print("Next:", highlight=False)
    for line in next_steps(sorted({r.experiment or r.task for r in rows})):
        console.print(f"  {line}", highlight=False, soft_wrap=True)


class SeedRounds(Callback):
    """The stage after a `-m` sweep's studies (conf/config.yaml: hydra.callbacks): sequential
    re-evaluation seeds while a pair of cells is undecided (rnnsweep.seed_rounds),
    within search.seed_rounds_minutes of the sweep's start. It trains models; SweepSummary
    only reads and prints what the studies and this stage left in MLflow."""

    sweep_started: float | None = None  # time.time() at the sweep's start: the rounds' budget

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.search.study:
            return
        from rnnsweep.job import add_seeds
        from rnnsweep.seed_rounds import run_seed_rounds

        try:
            run_seed_rounds(config, add_seeds, self.sweep_started)
        except Exception as err:  # the studies are finished and kept; say why seeds stopped
            # rnnsweep's innermost frame, for a bug report: the message alone rarely says where
            frames = traceback.extract_tb(err.__traceback__)
            where = ([f for f in frames if f.filename.startswith(PACKAGE_DIR)] or frames)[-1]
            log.error("sequential re-evaluation seeds stopped: %s (%s:%d)",
                      redact(str(err).splitlines()[0] if str(err) else type(err).__name__),
                      Path(where.filename).name, where.lineno)


class SweepSummary(Callback):
    """Hydra callback (conf/config.yaml: hydra.callbacks) printing the table after `-m`."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.search.study:
            return
        from rnnsweep.tracking import tracking_uri  # MLflow: only once the sweep has ended

        uri = tracking_uri(config.tracking)
        try:
            rows = read_sweep(uri, str(config.tracking.sweep_id), str(config.search.metric))
        except Exception as err:  # the sweep itself succeeded; the table is a convenience
            log.warning("no sweep summary: could not read MLflow: %s", redact(str(err)))
            return
        print_summary(rows, str(config.search.metric), str(config.search.direction))
