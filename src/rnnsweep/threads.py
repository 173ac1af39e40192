"""How many torch threads one worker uses: `trainer.num_threads`, or a fair share of cores.

Several workers on one machine each running torch's default (one thread per core)
oversubscribe the CPU: OpenMP threads then wait on each other and a study finishes fewer
trials per minute than with one thread per worker. With `trainer.num_threads: null` a worker
takes cores // local workers, where the number of local workers is, in order:
RNNSWEEP_LOCAL_WORKERS (set it when starting N processes by hand), else Hydra's joblib
launcher `n_jobs` (bounded by the cores) when the job runs under it, else 1.
"""

from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf

LOCAL_WORKERS_ENV = "RNNSWEEP_LOCAL_WORKERS"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _joblib_jobs(cores: int) -> int | None:
    """n_jobs of Hydra's joblib launcher when this job runs under it, else None."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return launcher_jobs(HydraConfig.get().launcher, cores)


def launcher_jobs(launcher: object, cores: int) -> int | None:
    """n_jobs of a Hydra launcher node when it is the joblib launcher, bounded by the cores;
    else None."""
    if launcher is None:
        return None
    target = str(OmegaConf.select(launcher, "_target_", default=""))
    n_jobs = OmegaConf.select(launcher, "n_jobs", default=None)
    if "joblib" not in target.lower() or n_jobs is None:
        return None
    n = int(n_jobs)
    return min(cores, cores + 1 + n if n < 0 else n)  # joblib: -1 means every core


def local_workers(cores: int) -> int:
    value = os.environ.get(LOCAL_WORKERS_ENV)
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"{LOCAL_WORKERS_ENV}={value!r} is invalid: a whole number") from None
    return _joblib_jobs(cores) or 1


def resolve_num_threads(trainer: DictConfig) -> int:
    """The `trainer` node's num_threads when set, else the cores divided among the local
    workers."""
    if trainer.num_threads:
        return int(trainer.num_threads)
    cores = available_cores()
    return max(1, cores // local_workers(cores))
