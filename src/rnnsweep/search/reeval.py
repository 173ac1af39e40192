"""Re-train a study's best configuration with fresh seeds, so every headline number has a spread.

The best trial's value is the maximum of many noisy draws and so biased in its favour; new
seeds on the same configuration give an unbiased estimate and its standard deviation.

What a re-evaluation seed varies: the initialisation, dropout and batch order (the run's
seed) and, where the task generates its data (`draws_data` on its data module: adding) and
`search.reeval_draws_data` is true, the data draw too: the seed trains, validates and is
tested on sets of its own, of the study's sizes and settings, drawn with a data seed derived
from the run's seed and the study's data.seed (rnnsweep.data.base.draw_seed). The search's
trials keep data.seed's data. Tasks with fixed data (chorales, data=file) keep one data set.
Every re-evaluation run logs the data seed it used (param `data.seed`, tag `reeval_data_seed`)
and whether it drew its own (tag `reeval_draws_data`), and its `reproduce` tag retrains it,
data seed included.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import socket
import statistics
from typing import Any

import optuna
import psutil
import torch
from omegaconf import DictConfig, OmegaConf

from rnnsweep.data.base import TensorDataModule, draw_seed
from rnnsweep.data.registry import build_with_seed
from rnnsweep.locks import store_lock
from rnnsweep.measure import rnn_backend
from rnnsweep.provenance import split_inputs
from rnnsweep.run_lifecycle import TrackedRun, failure_reason, run_parameters
from rnnsweep.search import space as search_space
from rnnsweep.search.objective import StudyContext, reproduce_command
from rnnsweep.tracking import Tracker, find_tagged
from rnnsweep.training import TrainSetup, build_module, train_model

log = logging.getLogger(__name__)
REEVAL_ROLE = "reeval"
# Trial k trains with seed + k; re-evaluation seeds start far above any trial number.
REEVAL_SEED_OFFSET = 1_000_000
# On each re-evaluation run (and the parent): "true" when its seed drew its own data. A run
# from before the setting existed has no tag and shared the study's data.
DRAWS_TAG = "reeval_draws_data"
# The data.seed a re-evaluation run's data were built with (also its param `data.seed`). Not
# the condition tag `data.seed`: that one is the study's and groups its runs in the report.
DATA_SEED_TAG = "reeval_data_seed"


def reeval_seeds(seed: int, search: DictConfig) -> list[int]:
    """search.reeval_seeds seeds from the study's `seed`: deterministic and disjoint from
    every trial seed (seed + trial number)."""
    base = int(seed) + REEVAL_SEED_OFFSET
    return [base + k for k in range(int(search.reeval_seeds))]


def device_tags(setup: TrainSetup, datamodule: object) -> dict[str, str]:
    """The device and the recurrent kernels this job's cell runs on (measured, not assumed)."""
    use_cuda = setup.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    net = build_module(setup.nodes, datamodule).net.to(device)  # type: ignore[arg-type]
    example = torch.zeros(2, 3, datamodule.spec.input_size, device=device)  # type: ignore[attr-defined]
    return {"device": device.type, "backend": rnn_backend(net, example),
            "torch_version": torch.__version__}


def configured_draws(search: DictConfig) -> bool:
    """search.reeval_draws_data. A study's stored config from before the key existed (a seed
    round reads the study's own config.yaml) reads as false: its seeds shared its data."""
    return bool(OmegaConf.select(search, "reeval_draws_data", default=False))


def draws_own_data(ctx: StudyContext, best_number: int) -> bool:
    """Whether the re-evaluation seeds of best trial `best_number` draw their own data.

    Only for a task that generates its data. A study whose seeds already ran (finished or
    running) keeps what its first seed did, whatever this job's setting: the spread of one
    study's seeds must measure one thing, not a mix of draws and the study's data (a seed
    round on a study re-evaluated before this setting existed, or a rerun with it changed).
    """
    if not getattr(ctx.datamodule, "draws_data", False):
        return False
    wanted = configured_draws(ctx.search)
    earlier = _reeval_runs(ctx, best_number, "FINISHED") + _reeval_runs(ctx, best_number,
                                                                        "RUNNING")
    if not earlier:
        return wanted
    first = min(earlier, key=lambda r: r.info.start_time)
    drew = first.data.tags.get(DRAWS_TAG) == "true"
    if drew != wanted:
        log.warning("study %s: its re-evaluation seeds already ran with "
                    "search.reeval_draws_data=%s; the remaining seeds do the same, so that "
                    "its seeds are not a mix of two kinds (this job asks for %s)",
                    ctx.study_name, str(drew).lower(), str(wanted).lower())
    return drew


def reeval_datamodule(ctx: StudyContext, seed: int, draws: bool) -> TensorDataModule:
    """The data re-evaluation seed `seed` trains, validates and is tested on: with `draws`, a
    draw of its own (data seed: draw_seed of the study's data.seed and `seed`), built from the
    study's data section like the study's own (same task, size and settings); else the
    study's data module itself, as the trials use."""
    if not draws:
        return ctx.datamodule
    study_seed = ctx.datamodule.data_seed()
    if study_seed is None:  # a task that draws its data must say from which seed
        raise TypeError(f"{type(ctx.datamodule).__name__} draws its data but has no data.seed")
    return build_with_seed(ctx.data, draw_seed(study_seed, seed))


def reeval_reproduce(ctx: StudyContext, values: dict[str, Any], seed: int,
                     data_seed: int | None) -> str:
    """The `reproduce` tag of a re-evaluation run: the single run with its values and seed
    (reproduce_command) and, when it drew its own data, `data.seed=<its data seed>` in place
    of any data.seed the job itself was given, so the tag names one data seed, the one used."""
    if data_seed is None:
        return reproduce_command(ctx, values, seed)
    own = [o for o in ctx.job_overrides if o.lstrip("+~").partition("=")[0] != "data.seed"]
    base = reproduce_command(dataclasses.replace(ctx, job_overrides=own), values, seed)
    return f"{base} data.seed={int(data_seed)}"


def _tracker_for(ctx: StudyContext, datamodule: TensorDataModule) -> Tracker:
    """The job's tracker, or a copy whose runs record `datamodule`'s splits as their datasets
    (the job's are the study's draw, not this seed's)."""
    if datamodule is ctx.datamodule:
        return ctx.tracker
    own = copy.copy(ctx.tracker)
    own.job_inputs = split_inputs(datamodule)
    return own


def _reeval_runs(ctx: StudyContext, best_number: int, status: str) -> list:
    return find_tagged(ctx.tracker, ctx.experiment, {
        "study_name": ctx.study_name, "role": REEVAL_ROLE, "best_trial_number": best_number,
    }, status=status)


def _claimed_seeds(ctx: StudyContext, best_number: int) -> set[int]:
    """Seeds finished or being trained by a live worker; a dead local worker's run is closed.

    Re-evaluation has no Optuna heartbeat, so liveness is the claiming process itself: a
    RUNNING run from this host whose process is gone was killed and is closed as KILLED.
    Runs from other hosts are trusted until their worker closes them.
    """
    claimed = {int(r.data.tags["reeval_seed"]) for r in _reeval_runs(ctx, best_number, "FINISHED")}
    host = socket.gethostname()
    for run in _reeval_runs(ctx, best_number, "RUNNING"):
        tags = run.data.tags
        pid = int(tags.get("worker_pid", 0))  # 0: no pid recorded, trusted as alive
        dead = tags.get("worker_host") == host and pid != 0 and not psutil.pid_exists(pid)
        if dead:
            ctx.tracker.end_run(run.info.run_id, "KILLED",
                                tags={"state": "FAIL", "fail_reason": "worker died"})
        else:
            claimed.add(int(tags["reeval_seed"]))
    return claimed


def _claim_next(ctx: StudyContext, best_number: int, seeds: list[int], values: dict[str, Any],
                draws: bool) -> tuple[int, TrackedRun, TensorDataModule] | None:
    """Atomically pick a seed no worker has and create its run (the claim), with the data it
    trains on (built here: the run's tags and datasets name them)."""
    lock = f"mlflow-reeval:{ctx.experiment}:{ctx.study_name}"
    with store_lock(ctx.search.storage, lock):
        claimed = _claimed_seeds(ctx, best_number)
        free = [s for s in seeds if s not in claimed]
        if not free:
            return None
        seed = free[0]
        datamodule = reeval_datamodule(ctx, seed, draws)
        data_seed = datamodule.data_seed()
        tags = {**ctx.base_tags, "role": REEVAL_ROLE, "best_trial_number": str(best_number),
                "reeval_seed": str(seed), "worker_host": socket.gethostname(),
                "worker_pid": str(os.getpid()), DRAWS_TAG: str(draws).lower(),
                "reproduce": reeval_reproduce(ctx, values, seed, data_seed if draws else None)}
        if data_seed is not None:
            tags[DATA_SEED_TAG] = str(data_seed)
        run = TrackedRun.start(
            _tracker_for(ctx, datamodule), ctx.experiment,
            f"reeval-{best_number:03d}-seed{seed}", tags=tags, parent_id=ctx.parent_run_id,
        )
    return seed, run, datamodule


def seeds_left(study: optuna.Study, ctx: StudyContext) -> int:
    """Re-evaluation seeds of the current best configuration not yet finished."""
    try:
        best = study.best_trial.number
    except ValueError:
        return 0
    done = {int(r.data.tags["reeval_seed"]) for r in _reeval_runs(ctx, best, "FINISHED")}
    return len([s for s in reeval_seeds(ctx.seed, ctx.search) if s not in done])


def reevaluate(study: optuna.Study, ctx: StudyContext) -> dict[str, float]:
    """Train the best trial's configuration once per re-evaluation seed not yet done.

    Returns the summary logged on the parent: mean and sd of each final metric over seeds.
    """
    search = ctx.search
    if int(search.reeval_seeds) <= 0:
        return {}
    try:
        best = study.best_trial
    except ValueError:  # no completed trial: nothing to re-evaluate
        return {}
    values = {k: v for k, v in best.params.items() if k in search.space}
    setup = search_space.apply(ctx.setup, search.space, values)
    draws = draws_own_data(ctx, best.number)
    seeds = reeval_seeds(ctx.seed, search)
    # Workers sharing a study split the seeds between them instead of each training all.
    while (claim := _claim_next(ctx, best.number, seeds, values, draws)) is not None:
        seed, run, datamodule = claim
        try:
            with run:  # trained outside the claim lock; a signal or a store failure stops
                run.log_start(run_parameters(values, seed, setup, datamodule))
                result = train_model(setup, datamodule, seed, on_validation=run.log_validation)
                run.log_result(result, search.metric)
        except Exception as err:  # recorded on its run; the other seeds still count
            log.warning("re-evaluation seed %d failed: %s", seed, failure_reason(err))
    return _summarise(ctx, best.number, draws)


def _summarise(ctx: StudyContext, best_number: int, draws: bool) -> dict[str, float]:
    runs = _reeval_runs(ctx, best_number, "FINISHED")
    keys = [f"best_{ctx.search.metric}", "test_loss", "test_acc", "gap_at_best"]
    summary: dict[str, float] = {"reeval_n": float(len(runs))}
    for key in keys:
        vals = [r.data.metrics[key] for r in runs if key in r.data.metrics]
        if vals:
            summary[f"reeval_{key}_mean"] = statistics.fmean(vals)
            summary[f"reeval_{key}_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    ctx.tracker.log(ctx.parent_run_id, metrics=summary,
                    tags={"reeval_best_trial_number": str(best_number),
                          DRAWS_TAG: str(draws).lower()})
    return summary
