"""The Optuna objective: one trial = one MLflow child run = one Lightning fit."""

from __future__ import annotations

import math
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from rnnsweep.data.base import TensorDataModule
from rnnsweep.errors import StoreError
from rnnsweep.interrupts import BatchBoundaryCheck
from rnnsweep.model import total_parameters
from rnnsweep.redact import redact
from rnnsweep.run_lifecycle import TrackedRun, run_parameters
from rnnsweep.search import space as search_space
from rnnsweep.search.study import retry_callback, storage_error
from rnnsweep.signals import Interrupted, raise_pending
from rnnsweep.tracking import TRIAL_ROLE, Tracker
from rnnsweep.training import TrainResult, TrainSetup, resolve_hidden_size, train_model

REASON_ATTR = "fail_reason"
RUN_ID_ATTR = "mlflow_run_id"
SURPLUS_ATTR = "surplus"
INTERRUPTED_ATTR = "interrupted"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class SurplusTrialError(RuntimeError):
    """Other workers' earlier trials already make up `search.n_trials`; this one never ran."""


def failed_by_itself(t: FrozenTrial) -> bool:
    """A trial that raised or diverged; not one interrupted, killed with its worker, or
    surplus: those say nothing about the parameters and do not count against the study."""
    return (
        t.state == TrialState.FAIL
        and REASON_ATTR in t.user_attrs
        and not t.user_attrs.get(INTERRUPTED_ATTR)
    )


def is_surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Trials ahead of `number` (finished, or running/queued with a lower number) fill the study.

    Trial numbers come from the storage in creation order, so every worker agrees on who is
    ahead: of two trials started at once for the last slot, exactly the later one yields.
    """
    ahead = sum(1 for t in study.get_trials(deepcopy=False) if t.state in FINISHED or (
        t.state in (TrialState.RUNNING, TrialState.WAITING) and t.number < number))
    return ahead >= n_trials


@dataclass
class StudyContext:
    """Everything a trial needs that does not change between trials: the job's parts, each
    built once from its own node (rnnsweep.job.open_study_context)."""

    search: DictConfig
    # The training before a trial's sampled values (rnnsweep.search.space.apply).
    setup: TrainSetup
    # The `data` node: a re-evaluation seed that draws its own data builds it again.
    data: DictConfig
    # The first training seed, which trial and re-evaluation seeds count from: for an
    # independent repeat r > 0 of the search the repeat's study seed
    # (rnnsweep.search.repeats.study_seed).
    seed: int
    datamodule: TensorDataModule
    tracker: Tracker
    experiment: str
    parent_run_id: str
    study_name: str
    base_tags: dict[str, str]
    # The job's own command-line overrides, minus the search group: the base of `reproduce`.
    job_overrides: list[str]


def reproduce_command(ctx: StudyContext, values: dict[str, Any], seed: int) -> str:
    """The single run that retrains this trial bit for bit on the same machine: the job's
    overrides, the sampled values, the seed and the thread count the trial ran with (torch
    sums in a different order with another number of threads)."""
    parts = ["python", "train.py", "search=none", *ctx.job_overrides]
    # search.repeat names a study; the single run's own seed says which repeat it retrains.
    parts = [p for p in parts
             if not p.startswith(("trainer.num_threads=", "seed=", "search.repeat="))]
    parts += search_space.overrides(ctx.search.space, values)
    parts += [f"seed={seed}", f"trainer.num_threads={ctx.setup.num_threads}"]
    return redact(" ".join(shlex.quote(p) for p in parts))


def trial_seed(seed: int, trial_number: int) -> int:
    # Same trial number -> same seed in every cell's study (of the same search.repeat: seed
    # is the StudyContext's, the repeat's): the comparison stays paired.
    return int(seed) + trial_number


class Objective:
    """Returns the best validation value of the trial; raises TrialPruned or the failure."""

    def __init__(self, ctx: StudyContext) -> None:
        self.ctx = ctx

    def __call__(self, trial: optuna.Trial) -> float:
        """One trial. A failure of the trial itself propagates as an Exception (Optuna
        records it FAIL and the failure budget counts it); a store failure (StoreError, see
        rnnsweep.errors) or an interruption ends the trial as interrupted, not counted, and
        passes Optuna as a BaseException so the study stops."""
        try:
            raise_pending()
            return self._run_trial(trial)
        except Interrupted as err:
            self._fail_and_requeue(trial, str(err))
            raise
        except StoreError as err:
            self._abandon(trial, err)
            raise
        except Exception as err:  # the Optuna storage failing in suggest, report, user attrs
            halt = self._store_error(err)
            if halt is None:
                raise
            self._abandon(trial, halt)
            raise halt from err

    def _store_error(self, err: BaseException) -> StoreError | None:
        """err as a StoreError when it is the infrastructure's fault: a failure of the
        study storage (or a full or read-only disk) raised inside a trial."""
        return storage_error(self.ctx.search, err)

    def _abandon(self, trial: optuna.Trial, err: StoreError) -> None:
        """End the trial as interrupted (not counted, re-queued) when the study storage still
        answers. When it does not, the trial stays RUNNING without a fail_reason: the next
        run fails it as stale and re-queues it, and the failure budget never counts it."""
        try:
            self._fail_and_requeue(trial, f"store failed: {err.store}")
        except (Exception, StoreError):
            pass

    def _run_trial(self, trial: optuna.Trial) -> float:
        ctx = self.ctx
        if is_surplus(trial.study, trial.number, ctx.search.n_trials):
            # Checked before the MLflow run exists: a surplus trial leaves no run behind.
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise SurplusTrialError("search.n_trials already reached by other workers")
        values = search_space.suggest(trial, ctx.search.space)
        setup = search_space.apply(ctx.setup, ctx.search.space, values)
        seed = trial_seed(ctx.seed, trial.number)
        run = TrackedRun.start(
            ctx.tracker, ctx.experiment, f"trial-{trial.number:03d}",
            tags={
                **ctx.base_tags,
                "role": TRIAL_ROLE,
                "trial_number": str(trial.number),
                "reproduce": reproduce_command(ctx, values, seed),
            },
            parent_id=ctx.parent_run_id,
            # The study storage failing is the infrastructure's fault, not the trial's.
            classify=self._store_error,
            # Before the run closes: the failure budget quotes the reason.
            on_failure=lambda reason: trial.set_user_attr(REASON_ATTR, reason),
        )
        with run:
            trial.set_user_attr(RUN_ID_ATTR, run.run_id)
            hidden = resolve_hidden_size(setup.nodes, ctx.datamodule)
            n_params = total_parameters(
                setup.nodes.cell, ctx.datamodule.spec, hidden, int(setup.nodes.model.num_layers)
            )
            trial.set_user_attr("n_params", n_params)
            run.log_start(run_parameters(values, seed, setup, ctx.datamodule),
                          metrics={"n_params": n_params, "hidden_size_used": hidden})
            result = train_model(
                setup, ctx.datamodule, seed, callbacks=[BatchBoundaryCheck()],
                on_validation=run.log_validation, trial=trial,
            )
            self._keep_result(trial, run, result)
        return result.best_value

    def _fail_and_requeue(self, trial: optuna.Trial, reason: str) -> None:
        """Optuna lets a BaseException through without ending the trial: end it here, and
        queue the same parameters again (as for a dead worker) when search.retry_failed_trials
        allows, since an interruption says nothing about the parameters."""
        study = trial.study
        retry = self.ctx.search.retry_failed_trials
        frozen = next(t for t in study.get_trials(deepcopy=True) if t.number == trial.number)
        if frozen.state != TrialState.RUNNING:  # already ended before the signal came
            return
        requeue = retry_callback(retry)
        if requeue is not None:
            requeue(study, frozen)
        # Interrupted first: a trial with a reason but without this mark would count as
        # failed by itself if the storage stopped between the two writes.
        trial.set_user_attr(INTERRUPTED_ATTR, True)
        trial.set_user_attr(REASON_ATTR, reason)
        study.tell(trial, state=TrialState.FAIL)

    def _keep_result(self, trial: optuna.Trial, run: TrackedRun, result: TrainResult) -> None:
        """The result on the run (written as it closes), the test metrics on the trial, and
        the weights of a trial that beats the study's best so far."""
        run.log_result(result, self.ctx.search.metric)
        # Every test metric (test_loss and task-specific ones such as test_count_limit), so
        # the parent run can report the best trial's values.
        for key, value in result.test_metrics.items():
            if key.startswith("test_") and math.isfinite(value):
                trial.set_user_attr(key, value)
        if _improves(trial.study, result.best_value) and result.best_state is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "best_state.pt"
                torch.save(result.best_state, path)
                self.ctx.tracker.log_file(run.run_id, path, "model")


def _improves(study: optuna.Study, value: float) -> bool:
    try:
        best = study.best_value
    except ValueError:  # no completed trial yet
        return True
    return value < best if study.direction == optuna.study.StudyDirection.MINIMIZE else value > best
