"""Run one study to its total of finished trials, then record the outcome on the parent run."""

from __future__ import annotations

import gc
import logging
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from rnnsweep.locks import store_lock
from rnnsweep.provenance import log_split
from rnnsweep.run_lifecycle import add_to_totals, end_quietly
from rnnsweep.search import space as search_space
from rnnsweep.search.fair_pruner import sampler_trials_complete
from rnnsweep.search.objective import (
    FINISHED,
    REASON_ATTR,
    RUN_ID_ATTR,
    Objective,
    StudyContext,
    failed_by_itself,
)
from rnnsweep.search.study import fail_silent_trials, storage_error
from rnnsweep.signals import deferred
from rnnsweep.tracking import PARENT_ROLE, TRIAL_ROLE, Tracker, find_tagged
from rnnsweep.training import build_module

log = logging.getLogger(__name__)


class StudyFailedError(RuntimeError):
    """Too many trials failed; the message names the most common reason."""


@dataclass
class StudySummary:
    study_name: str
    parent_run_id: str
    n_complete: int
    n_pruned: int
    n_failed: int
    best_value: float | None
    best_params: dict[str, Any]
    wall_seconds: float


def count_states(study: optuna.Study) -> Counter:
    return Counter(t.state for t in study.get_trials(deepcopy=False))


class FailureBudget:
    """Stop the study when failed trials exceed `max_rate` of all trials that ended, or
    reach `max_failures`: with max_rate=1.0 a space where every trial fails would never end."""

    def __init__(self, max_rate: float, min_trials: int, max_failures: int) -> None:
        self.max_rate, self.min_trials, self.max_failures = max_rate, min_trials, max_failures
        self.message: str | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trials = [
            t for t in study.get_trials(deepcopy=False)
            if t.state in FINISHED or failed_by_itself(t)
        ]
        failed = [t for t in trials if t.state == TrialState.FAIL]
        over_rate = len(failed) > self.max_rate * len(trials) and len(trials) >= self.min_trials
        if not over_rate and len(failed) < self.max_failures:
            return
        reasons = Counter(t.user_attrs.get(REASON_ATTR, "unknown error") for t in failed)
        reason, count = reasons.most_common(1)[0]
        self.message = (
            f"study {study.study_name!r} stopped: {len(failed)} of {len(trials)} trials failed "
            f"(search.max_failure_rate={self.max_rate}, at most {self.max_failures} failures); "
            f"most common reason ({count}x): {reason}"
        )
        study.stop()


def find_or_create_parent(tracker: Tracker, experiment: str, name: str, tags: dict[str, str],
                          storage: str, config_yaml: str) -> str:
    """The study's one parent run: found by study name and reopened, or created once, with
    the job's config (config_yaml) as its config.yaml.

    Under a lock in the study storage (its URL), so workers starting together never make two
    parents.
    """
    with store_lock(storage, f"mlflow-parent:{experiment}:{name}"):
        parent = tracker.find_parent(experiment, name)
        created = parent is None
        if created:
            parent = tracker.start_run(
                experiment, name, {**tags, "study_name": name, "role": PARENT_ROLE}
            )
        # A found parent may lack its files: a full artifact store stopped the job that made it.
        if created or "config.yaml" not in {a.path for a in tracker.client.list_artifacts(parent)}:
            try:
                if tracker.job_split:  # data=file: the rows of each split, to reuse them
                    log_split(tracker, parent, tracker.job_split)
                tracker.log_config(parent, config_yaml)  # last: it says the others are there
            except BaseException:
                if created:  # not left RUNNING; the rerun finds it and logs them again
                    end_quietly(tracker, parent, "FAILED")
                raise
        if created:
            return parent
    tracker.reopen(parent)  # the caller tags it with this sweep's id
    return parent


def close_orphan_runs(study: optuna.Study, ctx: StudyContext) -> int:
    """Close child runs left RUNNING by a dead worker once Optuna no longer runs their trial."""
    running = {
        t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    }
    runs = find_tagged(ctx.tracker, ctx.experiment,
                       {"study_name": ctx.study_name, "role": TRIAL_ROLE}, status="RUNNING")
    closed = 0
    for run in runs:
        if int(run.data.tags.get("trial_number", -1)) in running:
            continue  # a live worker's trial, or one whose heartbeat is not stale yet
        ctx.tracker.end_run(run.info.run_id, "KILLED", tags={
            "state": "FAIL", "fail_reason": "worker died (no heartbeat)"})
        closed += 1
    return closed


def _fail_stale(study: optuna.Study, search: DictConfig) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    fail_silent_trials(study, search)


def _optimize_until_done(study: optuna.Study, ctx: StudyContext, objective: Objective,
                         budget: FailureBudget, callbacks: list) -> None:
    search, n_trials = ctx.search, ctx.search.n_trials
    _fail_stale(study, search)
    close_orphan_runs(study, ctx)  # left by a worker that died before this one started
    while budget.message is None:
        _fail_stale(study, search)
        states = count_states(study)
        finished = sum(states[s] for s in FINISHED)
        if finished >= n_trials:
            break
        if finished + states[TrialState.RUNNING] >= n_trials:
            time.sleep(max(1, search.heartbeat_interval))
            close_orphan_runs(study, ctx)
            continue
        with deferred():  # signals reach only the objective, which closes its trial
            # catch=(Exception,): a trial's own failure is recorded and the study goes on; a
            # store failure (StoreError) or a signal is a BaseException and stops it.
            study.optimize(
                objective,
                n_trials=1,
                catch=(Exception,),
                callbacks=callbacks,
                # Trainer/module reference cycles otherwise grow a long study's memory.
                gc_after_trial=True,
                show_progress_bar=False,
            )
    close_orphan_runs(study, ctx)  # of trials failed as stale while this worker ran


def run_study(study: optuna.Study, ctx: StudyContext, progress: Any = None) -> StudySummary:
    """Optimize until exactly `search.n_trials` finished trials exist; resumes a partial study.

    One trial per `optimize` call, so the count is checked before each new trial: a worker
    starts one only while finished + running trials fall short. When the rest are running on
    other workers it waits, and takes over any that turn stale (their worker died).
    """
    n_trials = ctx.search.n_trials
    started = time.perf_counter()
    # Below a rate of 1 the rate itself ends an all-failing study; at 1, cap at 10x n_trials.
    budget = FailureBudget(ctx.search.max_failure_rate, min_trials=3, max_failures=10 * n_trials)
    callbacks: list = [budget]
    if progress is not None:
        callbacks.append(progress)
    objective = Objective(ctx)
    # Imports and setup live as long as the process: frozen, they drop out of the collection
    # after each trial, which then costs microseconds instead of half a second.
    gc.collect()
    gc.freeze()
    try:
        _optimize_until_done(study, ctx, objective, budget, callbacks)
    except Exception as err:  # Optuna's storage outside a trial: ask, stale checks, counts
        halt = storage_error(ctx.search, err)
        if halt is None:
            raise
        raise halt from err
    states = count_states(study)
    finished = sum(states[s] for s in FINISHED)
    summary = StudySummary(
        study_name=study.study_name,
        parent_run_id=ctx.parent_run_id,
        n_complete=states[TrialState.COMPLETE],
        n_pruned=states[TrialState.PRUNED],
        n_failed=sum(1 for t in study.get_trials(deepcopy=False) if failed_by_itself(t)),
        best_value=None,
        best_params={},
        wall_seconds=time.perf_counter() - started,
    )
    if states[TrialState.COMPLETE]:
        best = study.best_trial
        summary.best_value, summary.best_params = best.value, dict(best.params)
    record_outcome(ctx, study, summary,
                   complete=budget.message is None and finished >= n_trials)
    if budget.message:
        raise StudyFailedError(budget.message)
    return summary


def record_outcome(ctx: StudyContext, study: optuna.Study, summary: StudySummary,
                   complete: bool = False) -> None:
    """Best value, hyperparameters and weights on the parent run; trial counts as metrics;
    this job's search seconds added to the study's (`search_seconds`, over all its jobs).
    The best hyperparameters are tags `best.<name>` (the current best, updated by every
    job) and, once the search is `complete`, also params (`_log_best_params`)."""
    tracker, run_id = ctx.tracker, ctx.parent_run_id
    # Summed over the jobs that searched (a resume adds its own), as study_seconds is.
    add_to_totals(tracker, run_id, {"search_seconds": summary.wall_seconds})
    metrics: dict[str, float] = {
        "n_complete": summary.n_complete,
        # Complete trials the sampler's model proposed (past its random start-up): what the
        # search really evaluated of its own (rnnsweep.search.fair_pruner).
        "n_sampler_complete": sampler_trials_complete(study, ctx.search.n_startup_trials),
        "n_pruned": summary.n_pruned,
        "n_failed": summary.n_failed,
    }
    tags: dict[str, str] = {}
    if summary.best_value is not None:
        best = study.best_trial
        metrics[f"best_{ctx.search.metric}"] = summary.best_value
        for key, value in best.user_attrs.items():
            if key.startswith("test_") or key == "n_params":
                metrics[f"best_{key}"] = value
        tags["best_trial_number"] = str(best.number)
        best_run = best.user_attrs.get(RUN_ID_ATTR)
        if best_run:
            tags["best_trial_run_id"] = best_run
            _log_best_model(ctx, best, best_run)
        # Tags: the current best, which a resumed study may still change.
        tags.update({f"best.{k}": str(v) for k, v in best.params.items()})
    tracker.log(run_id, metrics=metrics, tags=tags)
    if complete and summary.best_value is not None:
        _log_best_params(ctx, study.best_trial)


def _log_best_params(ctx: StudyContext, best: FrozenTrial) -> None:
    """The completed search's answer as params `best.<name>` and `best_trial_number`: MLflow
    shows params on the run page and as runs-table columns, where users look for them.

    Params are immutable, so only once the search is complete: an interrupted study's best
    may still change, a rerun of a complete one finds the same trials and logs the same
    values (MLflow accepts that). A study later extended with a larger search.n_trials may
    find another best: its params keep the first answer (and say which trial), the tags
    `best.*` and `best_trial_number` hold the new one."""
    params = {f"best.{k}": v for k, v in best.params.items()}
    params["best_trial_number"] = best.number
    try:
        ctx.tracker.log(ctx.parent_run_id, params=params)
    except Exception as err:  # MLflow refuses to change a param: the best moved since
        log.warning("study %s: its best is now trial %d; the params best.* keep the first "
                    "complete search's best, the tags best.* hold the new one (%s)",
                    ctx.study_name, best.number, str(err).splitlines()[0] if str(err) else "")


def _log_best_model(ctx: StudyContext, best: FrozenTrial, best_run_id: str) -> None:
    """The best trial's network as the MLflow Model `model` of the parent run (signature,
    input example: two test sequences), rebuilt from the trial's values and best weights:
    mlflow.pytorch.load_model("runs:/<parent>/model") gives the trial's test metrics.
    Logged once per best trial (a resumed study or another worker may get here again);
    with tracking.register_best, also registered under the study's name, tagged with
    cell and task."""
    tracker, parent = ctx.tracker, ctx.parent_run_id
    try:
        if any(m.tags.get("trial_run_id") == best_run_id for m in tracker.logged_models(parent)):
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = tracker.download(best_run_id, "model/best_state.pt", Path(tmp))
            state = torch.load(path, map_location="cpu", weights_only=True)
        nodes = search_space.apply(ctx.setup, ctx.search.space, best.params).nodes
        module = build_module(nodes, ctx.datamodule)
        module.load_state_dict(state)
        ctx.datamodule.setup()
        example = ctx.datamodule.test_set.tensors[0][:2].numpy()
        tags = {"cell": nodes.cell.name, "task": ctx.datamodule.condition()["task"],
                "study_name": ctx.study_name, "trial_number": str(best.number),
                "trial_run_id": best_run_id}
        register_as = ctx.study_name if tracker.register_best else None
        model_id = tracker.log_model(parent, module.net, example, tags, register_as)
        tracker.log(parent, tags={"best_model_id": model_id})
    except Exception as err:  # the best trial's weights may live on another worker's store
        log.warning("could not log the best trial's model: %s", err)
