"""Glue between train.py and the pipeline: the environment (masking, the sweep's id, the
help), the whole-sweep preflight (rnnsweep.preflight) before Hydra starts, and the job
runner with its exit codes: 2 for bad input, 1 for a study that failed, 143 on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnsweep.errors import ConfigError, DataError, StoreError, infrastructure_cause
from rnnsweep.help_text import register as register_help
from rnnsweep.overrides import MULTIRUN_FLAGS, expand_repeats, expand_sizes
from rnnsweep.preflight import preflight
from rnnsweep.redact import (
    redact,
    redact_files,
    remember,
    remember_environment,
)
from rnnsweep.signals import (
    STOP_MESSAGE,
    Interrupted,
    end_of_job_in_worker,
    exits_on_signal,
    install_handlers,
    install_sweep_handlers,
    job_started_in_worker,
    raise_if_signalled,
)

log = logging.getLogger("rnnsweep")
EXIT_BAD_INPUT = 2
EXIT_STUDY_FAILED = 1
# Flags that only print information: nothing to validate.
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve",
              "--shell-completion", "-sc", "--version", "--package", "-p"}
# The pid of the command's own process: a job running elsewhere runs in a launcher's worker.
SWEEP_PID_ENV = "RNNSWEEP_SWEEP_PID"


def fail(message: str) -> None:
    print(f"error: {redact(message)}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


class RedactingStream:
    """A text stream that masks credentials in everything written through it."""

    def __init__(self, stream: object) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(redact(text))  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def prepare_environment(entry_file: str, argv: list[str] | None = None) -> None:
    """Pin the project root, give a sweep its id, and validate every job before any runs."""
    target = sys.argv if argv is None else None
    argv = sys.argv[1:] if argv is None else argv
    try:
        argv[:] = expand_repeats(expand_sizes(argv))
    except ConfigError as err:
        fail(str(err))
    if target is not None:
        target[1:] = argv  # Hydra reads sys.argv after this
    # Passwords given on the command line or in MLflow's variables are masked everywhere,
    # also where they appear outside a URL.
    remember(argv)
    remember_environment()
    root = Path(entry_file).resolve().parent
    os.environ.setdefault("RNNSWEEP_ROOT", str(root))
    register_help(root / "conf")  # --help lists each group's options from conf/
    # A SIGTERM while starting or between jobs ends the command with one line and 143; with
    # launcher workers it is forwarded to them (rnnsweep.signals; train.py installs it first).
    os.environ[SWEEP_PID_ENV] = str(os.getpid())
    install_sweep_handlers()
    if MULTIRUN_FLAGS & set(argv):
        os.environ.setdefault("RNNSWEEP_SWEEP_ID", time.strftime("%Y%m%d-%H%M%S"))
    if INFO_FLAGS & set(argv):
        # --cfg/--info print the config (a storage password too) with print(), not logging;
        # argparse echoes a bad argument on stderr.
        sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
        return
    with exits_on_signal():
        try:
            preflight(root / "conf", argv)
        except (ConfigError, DataError) as err:
            raise_if_signalled()
            fail(str(err))


def _redact_hydra_files(hc: DictConfig) -> None:
    """Hydra saves the command line's overrides (a storage password too) beside the logs."""
    files = [Path(hc.sweep.dir) / "multirun.yaml"]
    if hc.output_subdir:
        files += Path(hc.runtime.output_dir, hc.output_subdir).glob("*.yaml")
    redact_files(files)


def _job_log() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return str(Path(hc.runtime.output_dir) / f"{hc.job.name}.log")


def install_thread_hook() -> None:
    """A store failure in a background thread (Optuna's heartbeat) goes to the log, not
    to stderr as a traceback: the study's own call fails next and reports it in one line."""
    previous = threading.excepthook
    if getattr(previous, "rnnsweep", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and infrastructure_cause(args.exc_value, store_call=True):
            log.warning("background thread %s: store failed: %s",
                        getattr(args.thread, "name", "?"), redact(str(args.exc_value)))
            return
        previous(args)

    hook.rnnsweep = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def report_store_error(err: StoreError) -> None:
    """The infrastructure failed (rnnsweep.errors): one line naming the store, exit 1. The
    traceback goes to the job's log file only."""
    where = _job_log()
    logging.raiseExceptions = False  # a full disk must not add a traceback per log record
    file_log = logging.getLogger("rnnsweep.store")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            record = file_log.makeRecord(file_log.name, logging.ERROR, __file__, 0, "%s",
                                         (redact(traceback.format_exc()),), None)
            handler.handle(record)
    hint = f" (traceback: {where})" if where else ""
    print(f"error: {redact(str(err))}: the study stopped, with no trial counted as failed; "
          f"fix the store and rerun the same command to resume{hint}", file=sys.stderr)
    sys.exit(EXIT_STUDY_FAILED)


def run_job(cfg: DictConfig) -> float | None:
    """Body of the Hydra task function."""
    from hydra.core.hydra_config import HydraConfig

    from rnnsweep.console import quiet_third_party
    from rnnsweep.pipeline import run
    from rnnsweep.search.runner import StudyFailedError
    from rnnsweep.search.study import storage_error

    install_handlers()
    install_thread_hook()
    # MLflow retries a request to a server that went away for minutes (7 retries, backoff
    # factor 2); a study waits about 30 s (1+2+4+8+16), long enough for a server or its
    # database to restart, then stops in one line (rnnsweep.errors: the store's fault).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    quiet_third_party(in_study=False)
    # Also in a launcher's worker process, where train.py's preflight did not run.
    remember([OmegaConf.select(cfg, "search.storage"), OmegaConf.select(cfg, "tracking.uri"),
              *sys.argv[1:]])
    remember_environment()
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    if HydraConfig.initialized():
        _redact_hydra_files(HydraConfig.get())
    in_worker = os.environ.get(SWEEP_PID_ENV, str(os.getpid())) != str(os.getpid())
    if in_worker:
        job_started_in_worker()
    try:
        return run(cfg, job_overrides=overrides)
    except (ConfigError, DataError) as err:
        fail(str(err))
    except StudyFailedError as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        sys.exit(EXIT_STUDY_FAILED)
    except Interrupted as err:
        # SystemExit passes Hydra's launcher too, so a -m sweep stops here as well. In a
        # launcher's worker the sweep's own process says it, once for all workers.
        if not in_worker:
            print(f"{err}: {STOP_MESSAGE}", file=sys.stderr)
        sys.exit(err.exit_code)
    except StoreError as err:
        report_store_error(err)
    except Exception as err:
        halt = storage_error(cfg.search, err)
        if halt is not None:
            report_store_error(halt)
        # Hydra's own report would print the raw overrides, passwords included.
        log.error("%s", redact(traceback.format_exc()))
        print(f"error: {redact(f'{type(err).__name__}: {err}'.splitlines()[0])}", file=sys.stderr)
        sys.exit(EXIT_STUDY_FAILED)
    finally:
        if in_worker:
            end_of_job_in_worker()
    return None
