"""One job assembled from its config, shared by the studies (rnnsweep.pipeline) and the seed
rounds after them (rnnsweep.search.seed_rounds): the typed, checked config, the condition's
tags, and the study with everything its trials need."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import optuna
import yaml
from omegaconf import DictConfig, OmegaConf

from rnnsweep.data import build_datamodule
from rnnsweep.data.registry import experiment_name
from rnnsweep.limits import check_job
from rnnsweep.report.settings import Settings
from rnnsweep.run_lifecycle import study_run
from rnnsweep.schema import to_structured, validate
from rnnsweep.search.objective import StudyContext
from rnnsweep.search.reeval import device_tags, reevaluate
from rnnsweep.search.repeats import REPEAT_TAG, search_repeat, with_study_seed
from rnnsweep.search.runner import find_or_create_parent
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
from rnnsweep.tracking import Tracker
from rnnsweep.training import TrainSetup, run_params


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
    tags = {**tags, REPEAT_TAG: str(search_repeat(cfg.search))}
    storage = make_storage(cfg.search)
    name = full_study_name(cfg, datamodule.condition(), storage)
    study = open_study(cfg, name, storage)
    parent = find_or_create_parent(tracker, cfg, experiment, name, tags)
    settings = fixed_settings(cfg)
    # Device and RNN kernels on the parent and, through base_tags, on every trial and re-eval.
    device = device_tags(cfg, datamodule)
    # The trivial predictor's loss and the budget: what the report needs to read the study.
    budget = {k: v for k, v in run_params(TrainSetup.of(cfg), datamodule).items()
              if k != "num_threads"}
    # One batch; sweep_id again because a reopened parent may belong to a new sweep.
    tracker.log(parent, tags={"sweep_id": cfg.tracking.sweep_id,
                              "fixed_settings": settings_text(settings),
                              "settings_hash": settings_hash(settings),
                              **device, "search_sampler": sampler_label(cfg.search), **budget,
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


def _study_config(client, parent, config: DictConfig) -> DictConfig:  # noqa: ANN001
    """The study's own resolved config (its parent's config.yaml), with the live stores: the
    artifact has passwords masked."""
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(parent.info.run_id, "config.yaml", tmp)
        cfg = OmegaConf.create(yaml.safe_load(Path(path).read_text()))
    cfg.search.storage = config.search.storage
    cfg.tracking.uri = config.tracking.uri
    cfg.tracking.sweep_id = config.tracking.sweep_id
    return cfg


def add_seeds(client, parent, config: DictConfig, n_seeds: int) -> None:  # noqa: ANN001
    """Re-evaluate one study's best configuration up to n_seeds seeds (done ones are kept):
    a seed round's step (rnnsweep.search.seed_rounds), its job assembled again from the
    study's stored config."""
    cfg = typed_config(_study_config(client, parent, config))
    cfg.search.reeval_seeds = n_seeds
    datamodule = build_datamodule(cfg.data)
    tracker = Tracker(cfg)
    tracker.describe_job(datamodule, str(Path(cfg.paths.root) / "train.py"))
    experiment = cfg.tracking.experiment or experiment_name(cfg.data)
    tags = condition_tags(cfg, datamodule.condition())
    with held():  # the reopened parent is closed by study_run, which raises a held signal
        study, ctx = open_study_context(cfg, datamodule, tracker, experiment, tags, [])
    with study_run(tracker, ctx.parent_run_id, classify=lambda err: storage_error(cfg.search, err)):
        raise_pending()
        reevaluate(study, ctx)
