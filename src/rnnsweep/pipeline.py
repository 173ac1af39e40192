"""What one Hydra job does: validate, then run a study (or a single training run)."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from rnnsweep.console import announce_reevaluation, study_progress
from rnnsweep.job import Job, open_study_context
from rnnsweep.run_lifecycle import TrackedRun, run_parameters, study_run
from rnnsweep.search.reeval import reevaluate, seeds_left
from rnnsweep.search.runner import StudySummary, run_study
from rnnsweep.search.study import storage_error
from rnnsweep.signals import held, raise_pending
from rnnsweep.tracking import SINGLE_ROLE
from rnnsweep.training import train_model

log = logging.getLogger(__name__)


def run(cfg: DictConfig, job_overrides: list[str] | None = None) -> float | None:
    """Run the job described by cfg; returns the best objective value (Hydra's job return)."""
    job = Job(cfg)
    search = job.study.search
    if not search.study:
        return run_single(job)

    overrides = [o for o in (job_overrides or []) if not o.startswith("search=")]
    try:
        with held():  # a signal now would leave the new parent run RUNNING: study_run raises it
            study, ctx = open_study_context(job, overrides)
    except Exception as err:
        halt = storage_error(search, err)
        if halt is None:
            raise
        raise halt from err
    with study_run(job.tracker, ctx.parent_run_id,
                   classify=lambda err: storage_error(search, err)):
        raise_pending()  # closes the parent as KILLED
        with study_progress(study, search) as progress:
            summary = run_study(study, ctx, progress=progress)
        announce_reevaluation(study, search, remaining=seeds_left(study, ctx))
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


def run_single(job: Job) -> float:
    """search=none: train one model with the given values, logged as one top-level run."""
    setup, datamodule, model = job.setup, job.datamodule, job.setup.nodes.model
    values = {"num_layers": model.num_layers, "hidden_size": model.hidden_size,
              "dropout": model.dropout, "lr": setup.nodes.optim.lr}
    run = TrackedRun.start(job.tracker, job.experiment, f"single-{job.study.cell}",
                           {**job.tags, "role": SINGLE_ROLE})
    with run:
        job.tracker.log_config(run.run_id, job.config_yaml)
        run.log_start(run_parameters(values, job.seed, setup, datamodule),
                      metrics={**datamodule.baseline(), **datamodule.fitted_baselines()})
        result = train_model(setup, datamodule, job.seed, on_validation=run.log_validation)
        run.log_result(result, setup.metric)
    log.info("single run: best %s %.6g at step %d of %d (test %s)", setup.metric,
             result.best_value, result.best_step, result.budget_steps, result.test_metrics)
    return result.best_value
