"""One job assembled from its config, shared by the studies (rnnsweep.pipeline) and the seed
rounds after them (rnnsweep.seed_rounds): the typed, checked config, the condition's
tags, and the study with everything its trials need. The one place below the pipeline that
reads the whole config: each part it builds gets only its own nodes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
import yaml
from omegaconf import DictConfig, OmegaConf

from rnnsweep.data import build_datamodule
from rnnsweep.data.base import TensorDataModule
from rnnsweep.limits import check_job
from rnnsweep.report.settings import Settings
from rnnsweep.run_lifecycle import study_run
from rnnsweep.search.objective import StudyContext
from rnnsweep.search.reeval import device_tags, reevaluate
from rnnsweep.search.repeats import REPEAT_TAG, search_repeat, study_seed
from rnnsweep.search.runner import find_or_create_parent
from rnnsweep.search.settings import settings_hash, settings_text
from rnnsweep.search.study import (
    StudySettings,
    full_study_name,
    make_storage,
    open_study,
    preflight_storage,
    sampler_label,
    storage_error,
)
from rnnsweep.search.warm_start import OFF, WARM_ATTR
from rnnsweep.signals import held, raise_pending
from rnnsweep.threads import resolve_num_threads
from rnnsweep.tracking import Tracker
from rnnsweep.training import ModelNodes, TrainSetup, run_params
from rnnsweep.validation import check_libraries, checked_values


def typed_config(cfg: DictConfig) -> DictConfig:
    """Typed, resolved and range-checked config, its classes checked against the libraries
    installed; the task's own keys aside."""
    typed = checked_values(cfg)
    check_libraries(typed)
    return typed


def prepare(cfg: DictConfig) -> DictConfig:
    """typed_config plus the task's keys, its metric and the memory the largest model needs;
    raises ConfigError on bad input."""
    return check_pipeline(checked_values(cfg))


def check_pipeline(typed: DictConfig) -> DictConfig:
    """The checks that need the pipeline's imports, on a config checked_values typed (the
    preflight's second pass): the classes against the libraries, the task's keys, its metric,
    the memory the largest model needs and the report's settings; returns `typed`."""
    check_libraries(typed)
    checked_parts(typed)
    # The report's settings too: a sweep must not run for an hour to a report it cannot make.
    Settings.from_cfg(OmegaConf.to_container(typed.report, resolve=True))
    return typed


# The fixed settings (rnnsweep.search.settings): these sections and keys of the config.
SECTIONS = ("cell", "model", "optim", "trainer", "data")
EXTRA_KEYS = ("seed", "search.metric")
# Keys of those sections that do not change what a trial computes.
# cell.kernel picks an implementation of the same function (rnnsweep's fused CPU kernel or
# torch's), which, like the thread count, changes only the order of floating-point sums.
NOT_SETTINGS = frozenset({"trainer.num_threads", "trainer.progress_bar",
                          "trainer.memory_probe_batches", "cell.kernel"})
# Keys added after stores held studies: counted only when set, so a study that never used
# them keeps its settings hash (and resumes) as before.
COUNTED_WHEN_SET = frozenset({"trainer.stop_at"})


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(value, f"{prefix}.{key}", out)
    else:
        out[prefix] = node


def _sampled_keys(cfg: DictConfig) -> set[str]:
    """The config paths the study's search space sets per trial."""
    if not cfg.search.study:
        return set()
    keys = {str(p.path) for p in cfg.search.space.values()}
    if "model.param_budget" in keys:  # the budget decides the hidden size
        keys.add("model.hidden_size")
    return keys


def fixed_settings(cfg: DictConfig) -> dict[str, Any]:
    """{dotted key: value} of every fixed setting of cfg (a typed, resolved config), as
    rnnsweep.search.settings defines them."""
    flat: dict[str, Any] = {}
    for section in SECTIONS:
        _flatten(OmegaConf.to_container(cfg[section], resolve=True), section, flat)
    for key in EXTRA_KEYS:
        flat[key] = OmegaConf.select(cfg, key)
    skip = _sampled_keys(cfg) | NOT_SETTINGS
    skip |= {k for k in COUNTED_WHEN_SET if flat.get(k) is None}
    return {k: flat[k] for k in sorted(flat) if k not in skip}


def train_setup(cfg: DictConfig) -> TrainSetup:
    """What training reads, each part from its own node; a null trainer.progress_bar shows
    the batch progress only in a single run (search=none)."""
    bar = cfg.trainer.progress_bar
    return TrainSetup(ModelNodes(cfg.cell, cfg.model, cfg.optim, cfg.get("scheduler")),
                      cfg.trainer, str(cfg.search.metric), str(cfg.search.direction),
                      not cfg.search.study if bar is None else bool(bar),
                      resolve_num_threads(cfg.trainer))


def checked_parts(cfg: DictConfig) -> tuple[TensorDataModule, TrainSetup]:
    """The job's data module (its task's keys checked, no data generated yet) and what
    training reads, the job checked against them (rnnsweep.limits): its metric, its memory."""
    datamodule = build_datamodule(cfg.data)
    setup = train_setup(cfg)
    check_job(cfg.search, setup.nodes, cfg.data, datamodule)
    return datamodule, setup


def study_settings(cfg: DictConfig) -> StudySettings:
    return StudySettings(cfg.search, str(cfg.cell.name), fixed_settings(cfg))


def preflight_study(cfg: DictConfig) -> None:
    """The storage of one validated job answers, and its existing study (if any) fits."""
    if not cfg.search.study:
        return
    try:
        condition = build_datamodule(cfg.data).condition()
    except Exception:  # a task that must load its data first is named when its job runs
        condition = None
    preflight_storage(study_settings(cfg), condition)


class Job:
    """One job's parts, each built once from its own node of the config, typed and checked
    here as in the preflight (which a launcher's worker skips): what the pipeline, the study
    and a seed round read instead of the config. The job is checked (rnnsweep.limits) before
    the tracker opens its store."""

    def __init__(self, composed: DictConfig) -> None:
        cfg = typed_config(composed)
        if cfg.trainer.num_threads:  # before the data module's first torch operation
            os.environ.setdefault("OMP_NUM_THREADS", str(cfg.trainer.num_threads))
        self.datamodule, self.setup = checked_parts(cfg)
        self.experiment: str = (cfg.tracking.experiment
                                or self.datamodule.experiment_name(cfg.data))
        self.study = study_settings(cfg)
        self.data: DictConfig = cfg.data
        self.seed = int(cfg.seed)
        self.tracker = Tracker(cfg.tracking)
        # Commit, dirty flag and the three splits' datasets on every run of this job.
        self.tracker.describe_job(self.datamodule, str(Path(cfg.paths.root) / "train.py"))
        condition = self.datamodule.condition()
        self.tags = {"task": condition["task"], "cell": cfg.cell.name,
                     "data_size": condition["size"], "sweep_id": cfg.tracking.sweep_id,
                     "profile": cfg.profile,
                     **{f"data.{k}": v for k, v in condition.items()
                        if k not in ("task", "size")}}
        # The resolved config, stored with every study and single run.
        self.config_yaml = OmegaConf.to_yaml(cfg, resolve=True)


def open_study_context(job: Job, overrides: list[str]) -> tuple[optuna.Study, StudyContext]:
    """The job's study and everything its trials need; its parent run found or created.

    Every parent, trial and re-evaluation run carries the tag search_repeat (which
    independent search of the condition; not a condition itself: the report pools the
    repeats), and the trials and re-evaluations of repeat r > 0 train with the repeat's own
    seeds (ctx.seed is its study_seed, rnnsweep.search.repeats)."""
    spec, datamodule, tracker = job.study, job.datamodule, job.tracker
    search, repeat = spec.search, search_repeat(spec.search)
    tags = {**job.tags, REPEAT_TAG: str(repeat)}
    storage = make_storage(search)
    name = full_study_name(spec, datamodule.condition(), storage)
    study = open_study(spec, name, storage)
    parent = find_or_create_parent(tracker, job.experiment, name, tags, search.storage,
                                   job.config_yaml)
    # Device and RNN kernels on the parent and, through base_tags, on every trial and re-eval.
    device = device_tags(job.setup, datamodule)
    # The trivial predictor's loss and the budget: what the report needs to read the study.
    budget = {k: v for k, v in run_params(job.setup, datamodule).items() if k != "num_threads"}
    # One batch; sweep_id again because a reopened parent may belong to a new sweep.
    tracker.log(parent, tags={"sweep_id": job.tags["sweep_id"],
                              "fixed_settings": settings_text(spec.fixed),
                              "settings_hash": settings_hash(spec.fixed),
                              **device, "search_sampler": sampler_label(search), **budget,
                              "warm_start": str(study.user_attrs.get(WARM_ATTR, OFF)),
                              "loss_kind": datamodule.spec.loss,
                              # A parent from before repeats existed gets it when reopened.
                              REPEAT_TAG: tags[REPEAT_TAG]},
                metrics={**datamodule.baseline(), **datamodule.fitted_baselines()})
    ctx = StudyContext(
        search=search, setup=job.setup, data=job.data, seed=study_seed(job.seed, repeat),
        datamodule=datamodule, tracker=tracker, experiment=job.experiment,
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
    a seed round's step (rnnsweep.seed_rounds), its job assembled again from the
    study's stored config."""
    cfg = _study_config(client, parent, config)
    cfg.search.reeval_seeds = n_seeds
    job = Job(cfg)
    with held():  # the reopened parent is closed by study_run, which raises a held signal
        study, ctx = open_study_context(job, [])
    with study_run(job.tracker, ctx.parent_run_id,
                   classify=lambda err: storage_error(ctx.search, err)):
        raise_pending()
        reevaluate(study, ctx)
