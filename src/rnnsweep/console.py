"""What the user sees while jobs run: third-party noise filtered at its source, and one live
progress line per study in place of Optuna's per-trial log lines.

Every filter below names one message from one library that the user cannot act on; any other
warning still shows.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from rnnsweep.redact import RedactFilter

# (warning category, regex on the start of the message): each one is library-internal.
QUIET_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # The heartbeat / retry features are the documented way to recover dead workers' trials.
    (optuna.exceptions.ExperimentalWarning, r"RetryHeartbeatStaleTrialCallback is experimental"),
    (optuna.exceptions.ExperimentalWarning, r"RetryFailedTrialCallback is experimental"),
    (optuna.exceptions.ExperimentalWarning, r"Argument ``heartbeat_interval`` is an experimental"),
    (optuna.exceptions.ExperimentalWarning, r"fail_stale_trials is experimental"),
    # Lightning's own pytree helper on newer torch; nothing to change in user code.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # RecurrentLitModule moves its flat tensor batches itself on purpose (a measured speed-up).
    (UserWarning, r"You have overridden `transfer_batch_to_device` in `LightningModule` but"),
    # MLflow's SQL store still uses SQLAlchemy's noload().
    (DeprecationWarning, r"The :func:`_orm.noload` option is deprecated"),
    (DeprecationWarning, r"The ``noload`` loader strategy is deprecated"),
)

# Lightning's rank-zero INFO lines: device lines shown once per process, tips never.
# rank_zero_info logs through one module global, lightning_utilities.core.rank_zero.log, which
# each Lightning package re-points to its own logger on import; the standalone
# pytorch_lightning / lightning_fabric packages (imported by mlflow.pytorch, e.g. when the best
# model is logged) take it over from lightning.pytorch, so all four names carry the filter.
LIGHTNING_INFO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
)
ONCE_PREFIXES = ("GPU available:", "TPU available:", "HPU available:")
DROP_PREFIXES = ("💡 Tip:",)
# Inside a study the progress line reports every trial's end; this line would repeat it.
STUDY_DROP_PREFIXES = ("`Trainer.fit` stopped:",)
# Schema creation/migration of a fresh MLflow store: expected on the first run, every time.
QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic.runtime.migration")


class LightningInfoFilter(logging.Filter):
    """Drops Lightning's tips; lets each device line through once per process."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.in_study = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(DROP_PREFIXES):
            return False
        if self.in_study and message.startswith(STUDY_DROP_PREFIXES):
            return False
        if message.startswith(ONCE_PREFIXES):
            if message in self.seen:
                return False
            self.seen.add(message)
        return True


_lightning_filter = LightningInfoFilter()
# The process that owns the terminal: launcher workers (hydra/launcher=joblib) inherit this
# variable and print plain lines instead of redrawing on top of each other.
MAIN_PID_VAR = "RNNSWEEP_CONSOLE_PID"
os.environ.setdefault(MAIN_PID_VAR, str(os.getpid()))


def _lightning_info_loggers() -> list[str]:
    """The known names, and whichever logger rank_zero_info uses right now."""
    names = list(LIGHTNING_INFO_LOGGERS)
    module = sys.modules.get("lightning_utilities.core.rank_zero")
    current = getattr(getattr(module, "log", None), "name", None)
    if current and current not in names:
        names.append(current)
    return names


def _one_lightning_stream() -> None:
    """Lightning gives its loggers a stream handler of their own when it is imported before
    logging is configured (in a launcher's worker, before Hydra sets up the job's logging);
    with the job's handlers on the root logger every line would then print twice."""
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
                 "lightning_fabric"):
        logger = logging.getLogger(name)
        own = [h for h in logger.handlers if type(h) is logging.StreamHandler]
        for handler in own:
            logger.removeHandler(handler)
        if own:
            logger.propagate = True


def quiet_third_party(in_study: bool) -> None:
    """Install the precise filters above; idempotent, safe in every worker process."""
    for category, pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name in _lightning_info_loggers():
        logger = logging.getLogger(name)
        if _lightning_filter not in logger.filters:
            logger.addFilter(_lightning_filter)
    _lightning_filter.in_study = in_study
    _one_lightning_stream()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    mask_all_handlers()
    # MLflow draws a tqdm bar for every artifact download (the best trial's weights).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # The progress line replaces Optuna's "study created" and "Trial k finished" INFO lines.
    optuna.logging.set_verbosity(optuna.logging.WARNING)


_redact_filter = RedactFilter()


def mask_all_handlers() -> None:
    """Credentials masked on every log handler, not only Hydra's: Optuna and MLflow log
    through handlers of their own that do not propagate to the root logger."""
    loggers = [logging.getLogger(), *(
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if _redact_filter not in handler.filters:
                handler.addFilter(_redact_filter)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class StudyTimeColumn(ProgressColumn):
    """Elapsed time and an ETA from this process's own trial rate (rich's needs 2 samples)."""

    def render(self, task: Task) -> Text:
        return Text("· " + task.fields["progress"].times(), style="progress.elapsed")


class StudyProgress:
    """Optuna study callback drawing one line per study: trials, pruned, failed, best, times.

    Live (redrawn in place) on a terminal in the main process; otherwise one plain line per
    finished trial, so log files and parallel workers stay readable.
    """

    def __init__(
        self, study: optuna.Study, n_trials: int, metric: str, console: Console | None = None,
        live: bool | None = None,
    ) -> None:
        self.study, self.n_trials, self.metric = study, n_trials, metric
        self.console = console or Console()
        in_worker = os.environ.get(MAIN_PID_VAR) != str(os.getpid())
        self.live = self.console.is_terminal and not in_worker if live is None else live
        self.started = time.perf_counter()
        self.last_end = self.started
        self.counts: dict[TrialState, int] = {}
        self.best: float | None = None
        self.ended_here = 0
        self._refresh_counts()
        self._progress: Progress | None = None
        self._task: Any = None

    # -- state ---------------------------------------------------------------------------
    def _refresh_counts(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        self.counts = {s: sum(t.state == s for t in trials) for s in TrialState}
        complete = [t.value for t in trials if t.state == TrialState.COMPLETE]
        if complete:
            pick = min if self.study.direction == optuna.study.StudyDirection.MINIMIZE else max
            self.best = pick(complete)

    @property
    def finished(self) -> int:
        return self.counts[TrialState.COMPLETE] + self.counts[TrialState.PRUNED]

    def times(self) -> str:
        now = time.perf_counter()
        elapsed = now - self.started
        remaining = max(0, self.n_trials - self.finished)
        eta = None
        if remaining == 0:
            eta = 0.0
        elif self.ended_here:
            rate = (self.last_end - self.started) / self.ended_here
            eta = max(0.0, rate * remaining - (now - self.last_end))
        return f"{_clock(elapsed)} elapsed · ETA {_clock(eta)}"

    def detail(self) -> str:
        best = "-" if self.best is None else f"{self.best:.4g}"
        return (
            f"{min(self.finished, self.n_trials)}/{self.n_trials} trials · "
            f"{self.counts[TrialState.PRUNED]} pruned · {self.counts[TrialState.FAIL]} failed · "
            f"best {self.metric} {best}"
        )

    def line(self) -> str:
        return f"{self.study.study_name}  {self.detail()} · {self.times()}"

    # -- Optuna callback and context manager ----------------------------------------------
    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.ended_here += 1
        self.last_end = time.perf_counter()
        self._refresh_counts()
        if self._progress is not None:
            self._progress.update(self._task, completed=self.finished, detail=self.detail())
        else:
            self.console.print(self.line(), highlight=False, soft_wrap=True)

    def __enter__(self) -> StudyProgress:
        if self.live:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=20),
                TextColumn("{task.fields[detail]}"),
                StudyTimeColumn(),
                console=self.console,
                redirect_stdout=False,
                redirect_stderr=True,
            )
            self._task = self._progress.add_task(
                self.study.study_name, total=self.n_trials,
                completed=self.finished, detail=self.detail(), progress=self,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.finished, detail=self.detail())
            self._progress.stop()
            self._progress = None


def study_progress(study: optuna.Study, search: Any) -> StudyProgress:
    """The progress line for a study run by this job (its `search` node); also quiets
    third-party output."""
    quiet_third_party(in_study=True)
    return StudyProgress(study, int(search.n_trials), str(search.metric))


def announce_reevaluation(
    study: optuna.Study, search: Any, console: Console | None = None,
    remaining: int | None = None,
) -> None:
    """One line before the best configuration is re-trained, so the pause after the
    progress line has a reason on screen.

    `remaining`: the seeds still to train (a rerun after an interrupted re-evaluation has
    fewer than search.reeval_seeds); None means all of them. Nothing is printed when none is
    left.
    """
    seeds = int(search.reeval_seeds)
    todo = seeds if remaining is None else max(0, min(int(remaining), seeds))
    if todo > 0 and any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        done = "" if todo == seeds else f", {seeds - todo} of {seeds} done before"
        noun = "seed" if todo == 1 else "seeds"
        (console or Console()).print(
            f"{study.study_name}  re-training the best configuration with {todo} fresh {noun} "
            f"(search.reeval_seeds{done})", highlight=False, soft_wrap=True,
        )
