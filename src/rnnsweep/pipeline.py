"""What one Hydra job does: validate, then run a study (or a single training run)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnsweep.console import announce_reevaluation, study_progress
from rnnsweep.data import build_datamodule
from rnnsweep.data.registry import experiment_name
from rnnsweep.job import condition_tags, open_study_context, train_setup, typed_config
from rnnsweep.limits import check_job
from rnnsweep.run_lifecycle import TrackedRun, run_parameters, study_run
from rnnsweep.search.reeval import reevaluate, seeds_left
from rnnsweep.search.runner import StudySummary, run_study
from rnnsweep.search.study import storage_error
from rnnsweep.signals import held, raise_pending
from rnnsweep.tracking import SINGLE_ROLE, Tracker
from rnnsweep.training import TrainSetup, train_model

log = logging.getLogger(__name__)


def run(cfg: DictConfig, job_overrides: list[str] | None = None) -> float | None:
    """Run the job described by cfg; returns the best objective value (Hydra's job return)."""
    cfg = typed_config(cfg)
    if cfg.trainer.num_threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(cfg.trainer.num_threads))
    datamodule = build_datamodule(cfg.data)  # also checks the task's keys
    setup = train_setup(cfg)
    # As in the preflight, which a launcher's worker skips.
    check_job(cfg.search, setup.nodes, cfg.data, datamodule)
    tracker = Tracker(cfg.tracking)
    # Commit, dirty flag and the three splits' datasets on every run of this job.
    tracker.describe_job(datamodule, str(Path(cfg.paths.root) / "train.py"))
    experiment = cfg.tracking.experiment or experiment_name(cfg.data)
    condition = datamodule.condition()
    tags = condition_tags(cfg, condition)
    overrides = [o for o in (job_overrides or []) if not o.startswith("search=")]
    if not cfg.search.study:
        return run_single(cfg, setup, datamodule, tracker, experiment, tags)

    try:
        with held():  # a signal now would leave the new parent run RUNNING: study_run raises it
            study, ctx = open_study_context(cfg, datamodule, tracker, experiment, tags,
                                            overrides)
    except Exception as err:
        halt = storage_error(cfg.search, err)
        if halt is None:
            raise
        raise halt from err
    with study_run(tracker, ctx.parent_run_id, classify=lambda err: storage_error(cfg.search, err)):
        raise_pending()  # closes the parent as KILLED
        with study_progress(study, cfg.search) as progress:
            summary = run_study(study, ctx, progress=progress)
        announce_reevaluation(study, cfg.search, remaining=seeds_left(study, ctx))
        reevaluate(study, ctx)
    print_summary(summary)
    return summary.best_value


def print_summary(s: StudySummary) -> None:
    best = "n/a" if s.best_value is None else f"{s.best_value:.5g}"
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in s.best_params.items())
    log.info(
        "study %s: %d complete, %d pruned, %d failed; best %s (%s) in %.0f s",
        s.study_name, s.n_complete, s.n_pruned, s.n_failed, best, params, s.wall_seconds,
    )


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def run_single(cfg: DictConfig, setup: TrainSetup, datamodule: Any, tracker: Tracker,
               experiment: str, tags: dict[str, str]) -> float:
    """search=none: train one model with the given values, logged as one top-level run."""
    values = {"num_layers": cfg.model.num_layers, "hidden_size": cfg.model.hidden_size,
              "dropout": cfg.model.dropout, "lr": cfg.optim.lr}
    run = TrackedRun.start(tracker, experiment, f"single-{cfg.cell.name}",
                           {**tags, "role": SINGLE_ROLE})
    with run:
        tracker.log_config(run.run_id, OmegaConf.to_yaml(cfg, resolve=True))
        run.log_start(run_parameters(values, cfg.seed, setup, datamodule),
                      metrics={**datamodule.baseline(), **datamodule.fitted_baselines()})
        result = train_model(setup, datamodule, int(cfg.seed), on_validation=run.log_validation)
        run.log_result(result, cfg.search.metric)
    log.info("single run: best %s %.6g at step %d of %d (test %s)", cfg.search.metric,
             result.best_value, result.best_step, result.budget_steps, result.test_metrics)
    return result.best_value
