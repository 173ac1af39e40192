"""One MLflow run's life, from its start to its end status, for every kind of run.

Single runs (search=none), trials and re-evaluations are a `TrackedRun`: started with their
tags, given their parameters, one metrics batch per validation, and closed by the `with`
block that holds the training:

- the block ends: FINISHED, tag state=COMPLETE, with the result's figures;
- optuna.TrialPruned: FINISHED, state=PRUNED;
- any other Exception: FAILED, state=FAIL, fail_reason "Type: first line" (the trial's own
  failure). A store that fails while this is recorded raises its StoreError, chained to the
  failure: the infrastructure rule (rnnsweep.errors) stops the study, and the trial is
  re-queued instead of counted;
- an Exception that `classify` names a store failure, a StoreError, Ctrl-C, SIGTERM or
  another exit: KILLED, state=FAIL, fail_reason saying why. Closed quietly: a store that no
  longer answers must not replace the error or the signal's exit status being reported.

Every close writes one batch (state, reason, wall_seconds, cpu_seconds, and the result's
figures, or a pruned or failed run's optimizer_steps and best_step) and ends the run: two
round trips. A pruned trial's run name says so (`trial-007 (pruned)`): the runs table shows
names and statuses by default, and a pruned run is FINISHED like a complete one.

The study's parent run has its own, shorter rule (`study_run`), and records its own compute:
each time it is open (its job, a resume, a seed round at the end of a sweep) adds that
block's wall and CPU seconds to the totals `study_seconds` and `study_cpu_seconds`, and its
end time is set to its start plus `study_seconds`, so MLflow's Duration is the study's own
compute, not the span of the sweep it waited through.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import optuna
from lightning.pytorch.utilities.exceptions import SIGTERMException
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from rnnsweep.errors import StoreError
from rnnsweep.signals import Interrupted
from rnnsweep.tracking import Tracker
from rnnsweep.training import TrainResult, TrainSetup, run_params

log = logging.getLogger(__name__)
# Where add_to_totals keeps each addition: the history of `parts/<total>` (MLflow's charts
# group metrics by the prefix before "/", away from the totals).
PARTS_PREFIX = "parts/"

# Tells a store failure hidden in an ordinary exception (the Optuna storage, a full disk).
Classifier = Callable[[BaseException], StoreError | None]


def failure_reason(err: BaseException) -> str:
    """`Type: first line of the message`: a failed run's fail_reason tag (and a failed
    trial's user attribute, which the failure budget quotes)."""
    text = str(err)
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def run_parameters(values: dict[str, Any], seed: int, setup: TrainSetup,
                   datamodule: Any) -> dict[str, Any]:
    """The params every run logs: its model and optimiser values, its seed, the budget and,
    where the task has one, the data.seed of the data it trained on (a re-evaluation seed's
    own draw differs from its study's: the param tells the draws apart)."""
    params = {**values, "seed": seed, **run_params(setup, datamodule)}
    data_seed = getattr(datamodule, "data_seed", None)
    seed_used = data_seed() if callable(data_seed) else None
    if seed_used is not None:
        params["data.seed"] = seed_used
    return params


def end_quietly(tracker: Tracker, run_id: str, status: str, **closing: Any) -> None:
    """End a run if the tracking store still answers; a failed store must not replace the
    error (or the signal's exit status) being reported."""
    try:
        tracker.end_run(run_id, status, **closing)
    except (Exception, StoreError):
        log.debug("could not end run %s as %s", run_id, status, exc_info=True)


class TrackedRun:
    """A started MLflow run; `with run:` holds its training and ends it (module docstring).

    Started outside the block, so a re-evaluation can create its run under the claim lock
    and train after releasing it.
    """

    def __init__(self, tracker: Tracker, run_id: str, classify: Classifier | None = None,
                 on_failure: Callable[[str], None] | None = None, name: str = "") -> None:
        self.tracker, self.run_id, self.name = tracker, run_id, name
        self.classify, self.on_failure = classify, on_failure
        self.started = time.perf_counter()
        # Process CPU time: a worker trains one run at a time, so this is the run's own.
        self.cpu_started = time.process_time()
        # The result's figures, written with the closing state in the same batch.
        self._metrics: dict[str, float] = {}
        self._tags: dict[str, str] = {}

    @classmethod
    def start(cls, tracker: Tracker, experiment: str, name: str, tags: dict[str, str],
              parent_id: str | None = None, classify: Classifier | None = None,
              on_failure: Callable[[str], None] | None = None) -> TrackedRun:
        """Create the run, tagged state=RUNNING until it ends. `classify` tells a store
        failure from the run's own; `on_failure(reason)` runs before a failure is recorded
        (a trial keeps the reason for the failure budget)."""
        run_id = tracker.start_run(experiment, name, {**tags, "state": "RUNNING"}, parent_id)
        return cls(tracker, run_id, classify, on_failure, name)

    # -- what the run records -----------------------------------------------------------------
    def log_start(self, params: dict[str, Any], metrics: dict[str, float] | None = None) -> None:
        """The run's parameters (run_parameters) and figures known before training."""
        self.tracker.log(self.run_id, params=params, metrics=metrics)

    def log_validation(self, step: int, metrics: dict[str, float]) -> None:
        """train_model's on_validation hook: one batch per validation, at its step."""
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        self.tracker.log(self.run_id, metrics=finite, step=step)

    def log_result(self, result: TrainResult, metric: str) -> None:
        """The end-of-run figures (TrainResult.final_metrics) and the device and kernels it
        trained on; written when the run closes."""
        self._metrics.update(result.final_metrics(metric))
        self._tags.update({"device": result.device, "backend": result.backend})

    # -- how it ends --------------------------------------------------------------------------
    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        if err is None:
            self._close("COMPLETE", "FINISHED")
            return
        # A pruned or failed run's steps (train_model attaches them): a study's compute is
        # then the sum of its runs' optimizer_steps, pruned and failed ones included.
        self._metrics.update(getattr(err, "progress", {}))
        if isinstance(err, optuna.TrialPruned):
            self._close("PRUNED", "FINISHED")
        elif isinstance(err, Exception):
            halt = self.classify(err) if self.classify is not None else None
            if halt is None:
                reason = failure_reason(err)
                if self.on_failure is not None:
                    self.on_failure(reason)
                self._close("FAIL", "FAILED", reason)
                return
            self._kill(f"store failed: {halt.store}")
            raise halt from err
        elif isinstance(err, StoreError):
            self._kill(f"store failed: {err.store}")
        elif isinstance(err, SIGTERMException):
            # Lightning's own SIGTERM handler may stop fit first, with its SystemExit: the
            # job still exits as for SIGTERM (143).
            interrupted = Interrupted(signal.SIGTERM)
            self._kill(str(interrupted))
            raise interrupted from None
        elif isinstance(err, Interrupted):
            self._kill(str(err))
        else:  # KeyboardInterrupt without our handlers, another SystemExit
            self._kill("interrupted")

    def _closing(self, state: str, reason: str | None) -> dict[str, Any]:
        tags = {**self._tags, "state": state}
        if state == "PRUNED" and self.name:  # in the same batch: no extra round trip
            tags[MLFLOW_RUN_NAME] = f"{self.name} (pruned)"
        if reason:
            tags["fail_reason"] = reason
        metrics = {**self._metrics, "wall_seconds": time.perf_counter() - self.started,
                   "cpu_seconds": time.process_time() - self.cpu_started}
        return {"metrics": metrics, "tags": tags}

    def _close(self, state: str, status: str, reason: str | None = None) -> None:
        self.tracker.end_run(self.run_id, status, **self._closing(state, reason))

    def _kill(self, reason: str) -> None:
        end_quietly(self.tracker, self.run_id, "KILLED", **self._closing("FAIL", reason))


def add_to_totals(tracker: Tracker, run_id: str, amounts: dict[str, float]) -> dict[str, float]:
    """Add each amount to the run's metric of that name (a total over the study's jobs,
    resumes and seed rounds) and return the new totals.

    Each amount is first logged as one more entry of `parts/<name>`, and the total is the sum
    of that history: two workers closing one study's parent at once lose neither's share (a
    read-add-write of the total itself would)."""
    tracker.log(run_id, metrics={f"{PARTS_PREFIX}{k}": v for k, v in amounts.items()})
    totals = {k: math.fsum(m.value for m in
                           tracker.client.get_metric_history(run_id, f"{PARTS_PREFIX}{k}"))
              for k in amounts}
    tracker.log(run_id, metrics=totals)
    return totals


def close_study_run(tracker: Tracker, run_id: str, status: str, wall: float, cpu: float
                    ) -> None:
    """End a parent run with `status`, its block's seconds added to its totals, and its end
    time at start + study_seconds (never later than now): MLflow's Duration then shows the
    study's own compute even after a seed round reopened it at the end of a sweep."""
    totals = add_to_totals(tracker, run_id, {"study_seconds": wall, "study_cpu_seconds": cpu})
    start = tracker.client.get_run(run_id).info.start_time
    now = int(time.time() * 1000)
    end = min(now, start + round(totals["study_seconds"] * 1000)) if start else None
    tracker.end_run(run_id, status, end_time=end)


@contextmanager
def study_run(tracker: Tracker, run_id: str, classify: Classifier) -> Iterator[None]:
    """A study's parent run (found or created, and reopened, by the caller) around its
    trials and re-evaluations: FINISHED when the block ends, FAILED when it raises (quietly
    when a store failed), KILLED on a signal. Its state lives in its trials, so no tags; the
    block's wall and CPU seconds go to its totals (close_study_run) whatever the ending."""
    wall, cpu = time.perf_counter(), time.process_time()

    def close(status: str, quiet: bool = False) -> None:
        spent = (time.perf_counter() - wall, time.process_time() - cpu)
        try:  # quiet: a failed store must not replace the error or the signal being reported
            close_study_run(tracker, run_id, status, *spent)
        except (Exception, StoreError):
            if not quiet:
                raise
            log.debug("could not end study run %s as %s", run_id, status, exc_info=True)

    try:
        yield
    except Exception as err:
        halt = classify(err)
        if halt is None:
            close("FAILED")
            raise
        close("FAILED", quiet=True)
        raise halt from err
    except StoreError:  # the infrastructure's fault: the parent is closed if the store lets us
        close("FAILED", quiet=True)
        raise
    except BaseException:  # Ctrl-C, SIGTERM
        close("KILLED", quiet=True)
        raise
    close("FINISHED")
