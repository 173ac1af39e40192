"""What one Hydra job does: validate, then run a study (or a single training run)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from rnnsweep.console import announce_reevaluation, study_progress
from rnnsweep.data import build_datamodule
from rnnsweep.data.registry import experiment_name
from rnnsweep.limits import check_job
from rnnsweep.report.settings import Settings
from rnnsweep.run_lifecycle import TrackedRun, run_parameters, study_run
from rnnsweep.schema import to_structured, validate
from rnnsweep.search.objective import StudyContext
from rnnsweep.search.reeval import device_tags, reevaluate, seeds_left
from rnnsweep.search.repeats import REPEAT_TAG, search_repeat, with_study_seed
from rnnsweep.search.runner import StudySummary, find_or_create_parent, run_study
from rnnsweep.search.settings import fixed_settings, settings_hash, settings_text
from rnnsweep.search.space import match_params
from rnnsweep.search.study import (
    full_study_name,
    make_storage,
    open_study,
    sampler_label,
    storage_error,
)
from rnnsweep.search.warm_start import OFF, WARM_ATTR
from rnnsweep.signals import held, raise_pending
from rnnsweep.tracking import SINGLE_ROLE, Tracker
from rnnsweep.training import run_params, train_model

log = logging.getLogger(__name__)


def typed_config(cfg: DictConfig) -> DictConfig:
    """Typed, resolved and range-checked config, the task's own keys aside."""
    typed = match_params(to_structured(cfg))
    validate(typed)
    return typed


def prepare(cfg: DictConfig) -> DictConfig:
    """typed_config plus the task's keys, its metric and the memory the largest model needs;
    raises ConfigError on bad input."""
    typed = typed_config(cfg)
    datamodule = build_datamodule(typed.data)  # checks the task's keys without generating data
    check_job(typed, datamodule)
    # The report's settings too: a sweep must not run for an hour to a report it cannot make.
    Settings.from_cfg(OmegaConf.to_container(typed.report, resolve=True))
    return typed


def condition_tags(cfg: DictConfig, condition: dict[str, str]) -> dict[str, str]:
    return {
        "task": condition["task"],
        "cell": cfg.cell.name,
        "data_size": condition["size"],
        "sweep_id": cfg.tracking.sweep_id,
        "profile": cfg.profile,
        **{f"data.{k}": v for k, v in condition.items() if k not in ("task", "size")},
    }


def open_study_context(
    cfg: DictConfig, datamodule: Any, tracker: Tracker, experiment: str,
    tags: dict[str, str], overrides: list[str],
) -> tuple[optuna.Study, StudyContext]:
    """The job's study and everything its trials need; its parent run found or created.

    Every parent, trial and re-evaluation run carries the tag search_repeat (which
    independent search of the condition; not a condition itself: the report pools the
    repeats), and the trials and re-evaluations of repeat r > 0 train with the repeat's own
    seeds (ctx.cfg.seed is its study_seed, rnnsweep.search.repeats)."""
    tags = {**tags, REPEAT_TAG: str(search_repeat(cfg))}
    storage = make_storage(cfg)
    name = full_study_name(cfg, datamodule.condition(), storage)
    study = open_study(cfg, name, storage)
    parent = find_or_create_parent(tracker, cfg, experiment, name, tags)
    settings = fixed_settings(cfg)
    # Device and RNN kernels on the parent and, through base_tags, on every trial and re-eval.
    device = device_tags(cfg, datamodule)
    # The trivial predictor's loss and the budget: what the report needs to read the study.
    budget = {k: v for k, v in run_params(cfg, datamodule).items() if k != "num_threads"}
    # One batch; sweep_id again because a reopened parent may belong to a new sweep.
    tracker.log(parent, tags={"sweep_id": cfg.tracking.sweep_id,
                              "fixed_settings": settings_text(settings),
                              "settings_hash": settings_hash(settings),
                              **device, "search_sampler": sampler_label(cfg), **budget,
                              "warm_start": str(study.user_attrs.get(WARM_ATTR, OFF)),
                              "loss_kind": datamodule.spec.loss,
                              # A parent from before repeats existed gets it when reopened.
                              REPEAT_TAG: tags[REPEAT_TAG]},
                metrics={**datamodule.baseline(), **datamodule.fitted_baselines()})
    ctx = StudyContext(
        cfg=with_study_seed(cfg), datamodule=datamodule, tracker=tracker, experiment=experiment,
        parent_run_id=parent, study_name=name, base_tags={**tags, **device, "study_name": name},
        job_overrides=overrides,
    )
    return study, ctx


def run(cfg: DictConfig, job_overrides: list[str] | None = None) -> float | None:
    """Run the job described by cfg; returns the best objective value (Hydra's job return)."""
    cfg = typed_config(cfg)
    if cfg.trainer.num_threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(cfg.trainer.num_threads))
    datamodule = build_datamodule(cfg.data)  # also checks the task's keys
    check_job(cfg, datamodule)  # as in the preflight, which a launcher's worker skips
    tracker = Tracker(cfg)
    # Commit, dirty flag and the three splits' datasets on every run of this job.
    tracker.describe_job(datamodule, str(Path(cfg.paths.root) / "train.py"))
    experiment = cfg.tracking.experiment or experiment_name(cfg.data)
    condition = datamodule.condition()
    tags = condition_tags(cfg, condition)
    overrides = [o for o in (job_overrides or []) if not o.startswith("search=")]
    if not cfg.search.study:
        return run_single(cfg, datamodule, tracker, experiment, tags)

    try:
        with held():  # a signal now would leave the new parent run RUNNING: study_run raises it
            study, ctx = open_study_context(cfg, datamodule, tracker, experiment, tags,
                                            overrides)
    except Exception as err:
        halt = storage_error(cfg, err)
        if halt is None:
            raise
        raise halt from err
    with study_run(tracker, ctx.parent_run_id, classify=lambda err: storage_error(cfg, err)):
        raise_pending()  # closes the parent as KILLED
        with study_progress(study, cfg) as progress:
            summary = run_study(study, ctx, progress=progress)
        announce_reevaluation(study, cfg, remaining=seeds_left(study, ctx))
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


def run_single(
    cfg: DictConfig, datamodule: Any, tracker: Tracker, experiment: str, tags: dict[str, str]
) -> float:
    """search=none: train one model with the given values, logged as one top-level run."""
    values = {"num_layers": cfg.model.num_layers, "hidden_size": cfg.model.hidden_size,
              "dropout": cfg.model.dropout, "lr": cfg.optim.lr}
    run = TrackedRun.start(tracker, experiment, f"single-{cfg.cell.name}",
                           {**tags, "role": SINGLE_ROLE})
    with run:
        tracker.log_config(run.run_id, cfg)
        run.log_start(run_parameters(values, cfg.seed, cfg, datamodule),
                      metrics={**datamodule.baseline(), **datamodule.fitted_baselines()})
        result = train_model(cfg, datamodule, int(cfg.seed), on_validation=run.log_validation)
        run.log_result(result, cfg.search.metric)
    log.info("single run: best %s %.6g at step %d of %d (test %s)", cfg.search.metric,
             result.best_value, result.best_step, result.budget_steps, result.test_metrics)
    return result.best_value
