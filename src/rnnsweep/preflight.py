"""The whole sweep checked before anything runs.

Hydra composes each job's config only when the job starts, so a bad value in the third job
of a sweep would surface after two studies ran. The preflight composes and validates every
job of the sweep first; nothing in Hydra or OmegaConf does that for range checks.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnsweep.errors import ConfigError
from rnnsweep.overrides import MULTIRUN_FLAGS, check_groups, describe, job_overrides
from rnnsweep.redact import redact, remember, userinfo_problem
from rnnsweep.validation import checked_values


def check_data_file(cfg: DictConfig) -> None:
    """data=file: the file exists, has a supported type and opens as one (numpy only), so a
    missing or wrong file is refused before the pipeline's imports; the full check of its
    arrays runs when the data module is built (the second pass)."""
    if OmegaConf.select(cfg, "data.task") != "file":
        return
    value = str(OmegaConf.select(cfg, "data.path", default="") or "")
    if not value:
        raise ConfigError("data.path is missing: data=file needs data.path=<file.npz|.csv>")
    from rnnsweep.data.file_loaders import probe_sequence_file
    from rnnsweep.data.paths import resolve_path

    probe_sequence_file(resolve_path(value))


def preflight(conf_dir: Path, argv: list[str]) -> int:
    """Compose and validate every job; returns the number of jobs. Raises ConfigError.

    Two passes: every job's groups, keys, types and values first, and its data file's
    existence and type, with Hydra, OmegaConf and numpy alone, so a misspelt cell or key, a
    value out of range or a missing file is refused before the pipeline (torch, Lightning,
    MLflow, Optuna) is imported; then every job's classes, task keys, memory, stores and
    data, which need it."""
    multirun = bool(MULTIRUN_FLAGS & set(argv))
    overrides = [a for a in argv if not a.startswith("-")]
    user = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    GlobalHydra.instance().clear()
    job = user
    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            try:
                jobs = job_overrides(conf_dir, user, multirun)
                typed = []  # composed and typed once, for both passes
                for job in jobs:
                    check_groups(conf_dir, job)
                    composed = compose("config", overrides=job)
                    check_data_file(composed)
                    typed.append(checked_values(composed))
                from rnnsweep.job import check_pipeline

                for job, cfg in zip(jobs, typed, strict=True):  # noqa: B007 (an error names job)
                    check_pipeline(cfg)
                    remember([cfg.search.storage, cfg.tracking.uri])
                    preflight_stores(cfg)
            except (HydraException, OmegaConfBaseException) as err:
                raise ConfigError(describe(err, conf_dir, job)) from None
    finally:
        GlobalHydra.instance().clear()
    return len(jobs)


def preflight_stores(cfg: DictConfig) -> None:
    """The study storage and tracking server answer, before any job creates anything."""
    from rnnsweep.job import preflight_study
    from rnnsweep.tracking import tracking_key, tracking_uri
    from rnnsweep.tracking_check import check_reachable

    tracking = (tracking_uri(cfg.tracking), tracking_key())
    stores = [(cfg.search.storage, "search.storage"), tracking] if cfg.search.study else [tracking]
    for url, key in stores:
        problem = userinfo_problem(url)
        if problem:
            raise ConfigError(f"{key}={redact(url)}: {problem}")
    preflight_study(cfg)
    check_reachable(*tracking)
