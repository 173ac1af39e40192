"""Re-train a study's best configuration with fresh seeds, so every headline number has a spread.

The best trial's value is the maximum of many noisy draws and so biased in its favour; new
seeds on the same configuration give an unbiased estimate and its standard deviation.
"""

from __future__ import annotations

import logging
import os
import socket
import statistics

import optuna
import torch
from omegaconf import DictConfig

from rnnsweep.locks import store_lock
from rnnsweep.measure import rnn_backend
from rnnsweep.run_lifecycle import TrackedRun, failure_reason, run_parameters
from rnnsweep.search import space as search_space
from rnnsweep.search.objective import StudyContext
from rnnsweep.tracking import find_tagged
from rnnsweep.training import build_module, train_model

log = logging.getLogger(__name__)
REEVAL_ROLE = "reeval"
# Trial k trains with seed + k; re-evaluation seeds start far above any trial number.
REEVAL_SEED_OFFSET = 1_000_000


def reeval_seeds(cfg: DictConfig) -> list[int]:
    """Deterministic and disjoint from every trial seed (seed + trial number)."""
    base = int(cfg.seed) + REEVAL_SEED_OFFSET
    return [base + k for k in range(int(cfg.search.reeval_seeds))]


def device_tags(cfg: DictConfig, datamodule: object) -> dict[str, str]:
    """The device and the recurrent kernels this job's cell runs on (measured, not assumed)."""
    use_cuda = cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    net = build_module(cfg, datamodule).net.to(device)  # type: ignore[arg-type]
    example = torch.zeros(2, 3, datamodule.spec.input_size, device=device)  # type: ignore[attr-defined]
    return {"device": device.type, "backend": rnn_backend(net, example),
            "torch_version": torch.__version__}


def _reeval_runs(ctx: StudyContext, best_number: int, status: str) -> list:
    return find_tagged(ctx.tracker, ctx.experiment, {
        "study_name": ctx.study_name, "role": REEVAL_ROLE, "best_trial_number": best_number,
    }, status=status)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


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
        dead = tags.get("worker_host") == host and not _pid_alive(int(tags.get("worker_pid", 0)))
        if dead:
            ctx.tracker.end_run(run.info.run_id, "KILLED",
                                tags={"state": "FAIL", "fail_reason": "worker died"})
        else:
            claimed.add(int(tags["reeval_seed"]))
    return claimed


def _claim_next(ctx: StudyContext, best_number: int, seeds: list[int]
                ) -> tuple[int, TrackedRun] | None:
    """Atomically pick a seed no worker has and create its run (the claim)."""
    lock = f"mlflow-reeval:{ctx.experiment}:{ctx.study_name}"
    with store_lock(ctx.cfg.search.storage, lock):
        claimed = _claimed_seeds(ctx, best_number)
        free = [s for s in seeds if s not in claimed]
        if not free:
            return None
        seed = free[0]
        run = TrackedRun.start(
            ctx.tracker, ctx.experiment, f"reeval-{best_number:03d}-seed{seed}",
            tags={**ctx.base_tags, "role": REEVAL_ROLE, "best_trial_number": str(best_number),
                  "reeval_seed": str(seed), "worker_host": socket.gethostname(),
                  "worker_pid": str(os.getpid())},
            parent_id=ctx.parent_run_id,
        )
    return seed, run


def seeds_left(study: optuna.Study, ctx: StudyContext) -> int:
    """Re-evaluation seeds of the current best configuration not yet finished."""
    try:
        best = study.best_trial.number
    except ValueError:
        return 0
    done = {int(r.data.tags["reeval_seed"]) for r in _reeval_runs(ctx, best, "FINISHED")}
    return len([s for s in reeval_seeds(ctx.cfg) if s not in done])


def reevaluate(study: optuna.Study, ctx: StudyContext) -> dict[str, float]:
    """Train the best trial's configuration once per re-evaluation seed not yet done.

    Returns the summary logged on the parent: mean and sd of each final metric over seeds.
    """
    cfg = ctx.cfg
    if int(cfg.search.reeval_seeds) <= 0:
        return {}
    try:
        best = study.best_trial
    except ValueError:  # no completed trial: nothing to re-evaluate
        return {}
    values = {k: v for k, v in best.params.items() if k in cfg.search.space}
    best_cfg = search_space.apply(cfg, cfg.search.space, values)
    # Workers sharing a study split the seeds between them instead of each training all.
    while (claim := _claim_next(ctx, best.number, reeval_seeds(cfg))) is not None:
        seed, run = claim
        try:
            with run:  # trained outside the claim lock; a signal or a store failure stops
                run.log_start(run_parameters(values, seed, best_cfg, ctx.datamodule))
                result = train_model(best_cfg, ctx.datamodule, seed,
                                     on_validation=run.log_validation)
                run.log_result(result, cfg.search.metric)
        except Exception as err:  # recorded on its run; the other seeds still count
            log.warning("re-evaluation seed %d failed: %s", seed, failure_reason(err))
    return _summarise(ctx, best.number)


def _summarise(ctx: StudyContext, best_number: int) -> dict[str, float]:
    runs = _reeval_runs(ctx, best_number, "FINISHED")
    keys = [f"best_{ctx.cfg.search.metric}", "test_loss", "test_acc", "gap_at_best"]
    summary: dict[str, float] = {"reeval_n": float(len(runs))}
    for key in keys:
        vals = [r.data.metrics[key] for r in runs if key in r.data.metrics]
        if vals:
            summary[f"reeval_{key}_mean"] = statistics.fmean(vals)
            summary[f"reeval_{key}_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    ctx.tracker.log(ctx.parent_run_id, metrics=summary,
                    tags={"reeval_best_trial_number": str(best_number)})
    return summary
