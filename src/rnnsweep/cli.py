"""Glue between train.py and the pipeline: environment, whole-sweep preflight, job runner.

Hydra composes each job's config only when the job starts, so a bad value in the third job
of a sweep would surface after two studies ran. The preflight composes and validates every
job of the sweep first; nothing in Hydra or OmegaConf does that for range checks.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections import OrderedDict
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnsweep.errors import ConfigError, DataError
from rnnsweep.redact import redact, redact_files

log = logging.getLogger("rnnsweep")
EXIT_BAD_INPUT = 2
EXIT_STUDY_FAILED = 1
# Flags that only print information: nothing to validate.
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve",
              "--shell-completion", "-sc", "--version", "--package", "-p"}
MULTIRUN_FLAGS = {"-m", "--multirun"}


def fail(message: str) -> None:
    print(f"error: {redact(message)}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def prepare_environment(entry_file: str, argv: list[str] | None = None) -> None:
    """Pin the project root, give a sweep its id, and validate every job before any runs."""
    argv = sys.argv[1:] if argv is None else argv
    root = Path(entry_file).resolve().parent
    os.environ.setdefault("RNNSWEEP_ROOT", str(root))
    if MULTIRUN_FLAGS & set(argv):
        os.environ.setdefault("RNNSWEEP_SWEEP_ID", time.strftime("%Y%m%d-%H%M%S"))
    if INFO_FLAGS & set(argv):
        return
    try:
        preflight(root / "conf", argv)
    except (ConfigError, DataError) as err:
        fail(str(err))


def _job_overrides(conf_dir: Path, overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job Hydra will launch (the basic sweeper's expansion)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    if not multirun:
        if any(o.is_sweep_override() for o in parsed):
            bad = next(o for o in parsed if o.is_sweep_override())
            raise ConfigError(f"{bad.input_line}: a list of values needs -m (multirun)")
        return [overrides]
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    base = compose("config", overrides=plain, return_hydra_config=True)
    params = OmegaConf.select(base, "hydra.sweeper.params") or {}
    merged: OrderedDict[str, str] = OrderedDict((k, f"{k}={v}") for k, v in params.items())
    for o in parsed:
        merged[o.get_key_element()] = o.input_line
    batches = BasicSweeper.split_arguments(parser.parse_overrides(list(merged.values())), None)
    return batches[0]


def _check_groups(conf_dir: Path, overrides: list[str]) -> None:
    for line in overrides:
        key, _, value = line.partition("=")
        group = conf_dir / key.lstrip("+~")
        if group.is_dir() and value:
            options = sorted(p.stem for p in group.glob("*.yaml"))
            if value not in options:
                raise ConfigError(f"{key}={value} is invalid: allowed: {', '.join(options)}")


def preflight(conf_dir: Path, argv: list[str]) -> int:
    """Compose and validate every job; returns the number of jobs. Raises ConfigError."""
    from rnnsweep.pipeline import prepare

    multirun = bool(MULTIRUN_FLAGS & set(argv))
    overrides = [a for a in argv if not a.startswith("-")]
    user = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            jobs = _job_overrides(conf_dir, user, multirun)
            for job in jobs:
                _check_groups(conf_dir, job)
                cfg = prepare(compose("config", overrides=job))
                preflight_stores(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(str(err).strip().splitlines()[0]) from None
    finally:
        GlobalHydra.instance().clear()
    return len(jobs)


def preflight_stores(cfg: DictConfig) -> None:
    """The study storage and tracking server answer, before any job creates anything."""
    from rnnsweep.search.study import preflight_job
    from rnnsweep.tracking import check_reachable

    preflight_job(cfg)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    check_reachable(env or cfg.tracking.uri, "MLFLOW_TRACKING_URI" if env else "tracking.uri")


def _redact_hydra_files(hc: DictConfig) -> None:
    """Hydra saves the command line's overrides (a storage password too) beside the logs."""
    files = [Path(hc.sweep.dir) / "multirun.yaml"]
    if hc.output_subdir:
        files += Path(hc.runtime.output_dir, hc.output_subdir).glob("*.yaml")
    redact_files(files)


def run_job(cfg: DictConfig) -> float | None:
    """Body of the Hydra task function."""
    from hydra.core.hydra_config import HydraConfig

    from rnnsweep.console import quiet_third_party
    from rnnsweep.interrupts import Interrupted, install_handlers
    from rnnsweep.pipeline import run
    from rnnsweep.search.runner import StudyFailedError

    install_handlers()
    quiet_third_party(in_study=False)
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    if HydraConfig.initialized():
        _redact_hydra_files(HydraConfig.get())
    try:
        return run(cfg, job_overrides=overrides)
    except (ConfigError, DataError) as err:
        fail(str(err))
    except StudyFailedError as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        sys.exit(EXIT_STUDY_FAILED)
    except Interrupted as err:
        # SystemExit passes Hydra's launcher too, so a -m sweep stops here as well.
        print(f"{err}: runs closed; rerun the same command to resume", file=sys.stderr)
        sys.exit(err.exit_code)
    except Exception as err:
        # Hydra's own report would print the raw overrides, passwords included.
        log.error("%s", redact(traceback.format_exc()))
        print(f"error: {redact(f'{type(err).__name__}: {err}'.splitlines()[0])}", file=sys.stderr)
        sys.exit(EXIT_STUDY_FAILED)
    return None
