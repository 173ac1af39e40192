"""Glue between train.py and the pipeline: environment, whole-sweep preflight, job runner.

Hydra composes each job's config only when the job starts, so a bad value in the third job
of a sweep would surface after two studies ran. The preflight composes and validates every
job of the sweep first; nothing in Hydra or OmegaConf does that for range checks.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnsweep.errors import ConfigError, DataError, StoreError
from rnnsweep.help_text import register as register_help
from rnnsweep.redact import (
    redact,
    redact_files,
    remember,
    remember_environment,
    userinfo_problem,
)
from rnnsweep.signals import STOP_MESSAGE, exits_on_signal, install_sweep_handlers

log = logging.getLogger("rnnsweep")
EXIT_BAD_INPUT = 2
EXIT_STUDY_FAILED = 1
# Flags that only print information: nothing to validate.
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve",
              "--shell-completion", "-sc", "--version", "--package", "-p"}
MULTIRUN_FLAGS = {"-m", "--multirun"}
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
            fail(str(err))


def expand_sizes(argv: list[str]) -> list[str]:
    """`data.sizes=[0.05,0.1,0.25]` (a learning curve's sizes, rnnsweep.data.sizes) as the
    sweep Hydra runs: `data.size=0.05,0.1,0.25`, one study per cell and size. At least two
    sizes, each once, in increasing order, and -m; else one line naming data.sizes."""
    out = []
    for arg in argv:
        if not arg.startswith("data.sizes="):
            out.append(arg)
            continue
        body = arg.split("=", 1)[1].strip()
        values = [v.strip() for v in body.strip("[]").split(",") if v.strip()]
        if not (body.startswith("[") and body.endswith("]")) or len(values) < 2:
            raise ConfigError(f"{arg}: a learning curve needs a list of at least two sizes, "
                              "e.g. data.sizes=[0.1,0.25,0.5,1]")
        if not MULTIRUN_FLAGS & set(argv):
            raise ConfigError(f"{arg}: one study per size needs -m (multirun)")
        if any(a.startswith("data.size=") for a in argv):
            raise ConfigError(f"{arg}: give data.size or data.sizes, not both")
        out.append("data.size=" + ",".join(values))
    return out


def expand_repeats(argv: list[str]) -> list[str]:
    """`search.repeats=3` (independent searches per study, rnnsweep.search.repeats) as the
    sweep Hydra runs: `search.repeat=0,1,2`, one study per cell, size and repeat. An integer
    >= 1, -m, and not beside search.repeat; else one line naming search.repeats."""
    out = []
    for arg in argv:
        if not arg.startswith("search.repeats="):
            out.append(arg)
            continue
        body = arg.split("=", 1)[1].strip()
        if not re.fullmatch(r"[0-9]+", body) or int(body) < 1:
            raise ConfigError(f"{arg}: the number of independent searches per study must be "
                              "an integer >= 1, e.g. search.repeats=3")
        if not MULTIRUN_FLAGS & set(argv):
            raise ConfigError(f"{arg}: one study per repeat needs -m (multirun)")
        if any(a.lstrip("+~").startswith("search.repeat=") for a in argv):
            raise ConfigError(f"{arg}: give search.repeat or search.repeats, not both")
        out.append("search.repeat=" + ",".join(str(r) for r in range(int(body))))
    return out


def _parse(parser: OverridesParser, overrides: list[str]) -> list:
    """Hydra's override parser; a grammar error names the override it is in."""
    try:
        return parser.parse_overrides(overrides)
    except OverrideParseException:
        for line in overrides:
            try:
                parser.parse_overrides([line])
            except OverrideParseException as err:
                reason = str(err).strip().splitlines()[0]
                raise ConfigError(
                    f"{line}: not a valid override ({reason}); quote a value with special "
                    "characters: 'key=\"value\"'"
                ) from None
        raise


def _job_overrides(conf_dir: Path, overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job Hydra will launch (the basic sweeper's expansion)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    parser = OverridesParser.create()
    parsed = _parse(parser, overrides)
    if not multirun:
        if any(o.is_sweep_override() for o in parsed):
            bad = next(o for o in parsed if o.is_sweep_override())
            raise ConfigError(f"{bad.input_line}: a list of values needs -m (multirun)")
        return [overrides]
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    _check_groups(conf_dir, plain)
    base = compose("config", overrides=plain, return_hydra_config=True)
    params = OmegaConf.select(base, "hydra.sweeper.params") or {}
    merged: OrderedDict[str, str] = OrderedDict((k, f"{k}={v}") for k, v in params.items())
    for o in parsed:
        merged[o.get_key_element()] = o.input_line
    batches = BasicSweeper.split_arguments(parser.parse_overrides(list(merged.values())), None)
    _check_curve_sizes(parsed)
    return batches[0]


def _check_curve_sizes(parsed: list) -> None:  # noqa: ANN001 - Hydra's Override objects
    """A learning curve's sizes (data.size=0.05,0.1,...): each once, in increasing order, so
    two jobs never train the same study and the command reads as the curve it draws."""
    from rnnsweep.data.sizes import curve_point

    for o in parsed:
        if o.get_key_element() != "data.size" or not o.is_sweep_override():
            continue
        values = [str(v) for v in o.sweep_iterator()]
        points = [p for v in values if (p := curve_point(v)) is not None]
        if len(set(points)) < len(points) or len(set(values)) < len(values):
            raise ConfigError(f"{o.input_line}: a size is listed twice; list each once")
        if points != sorted(points):
            raise ConfigError(f"{o.input_line}: list curve sizes in increasing order, e.g. "
                              f"data.size={','.join(f'{p:g}' for p in sorted(points))}")


def _group_options(group: Path) -> list[str]:
    return sorted(p.stem for p in group.glob("*.yaml"))


def _groups(conf_dir: Path) -> list[str]:
    return sorted(d.name for d in conf_dir.iterdir() if d.is_dir() and d.name != "hydra")


def _check_groups(conf_dir: Path, overrides: list[str]) -> None:
    """A config group's value must name one of its files: list them when it does not."""
    for line in overrides:
        key, eq, value = line.partition("=")
        name = key.lstrip("+~")
        group = conf_dir / name
        if not eq or not name or not group.is_dir():
            continue
        options = _group_options(group)
        if not value.strip():
            raise ConfigError(f"{key}= is empty: allowed: {', '.join(options)}")
        given = value.strip().strip("'\"")
        if given not in options:
            close = difflib.get_close_matches(given, options, n=1)
            hint = f"; did you mean {name}={close[0]}?" if close else ""
            raise ConfigError(f"{key}={value} is invalid: allowed: {', '.join(options)}{hint}")


def _owning_options(conf_dir: Path, group: str, leaf: str) -> list[str]:
    """The options of config group `group` (data, search/sampler, ...) that have `leaf`:
    `data.path` without `data=file` is a key of another option, not a typo."""
    folder = conf_dir / group.replace(".", "/")
    options = _group_options(folder) if group and folder.is_dir() else []
    return [o for o in options if leaf in _yaml_keys(folder / f"{o}.yaml")]


def _yaml_keys(path: Path) -> list[str]:
    try:
        node = OmegaConf.load(path)
    except (OSError, OmegaConfBaseException, ValueError):
        return []
    return [str(k) for k in node] if OmegaConf.is_dict(node) else []


def _unknown_key(conf_dir: Path, job: list[str], key: str) -> str:
    """'key=value: no such key' with the keys that exist there and the closest one."""
    line = next((o for o in job if o.lstrip("+~").partition("=")[0] == key), key)
    parent, _, leaf = key.rpartition(".")
    try:
        # Without the bad line and without sweep values (`cell=lstm,gru` before the sweep is
        # expanded), which compose() would refuse: only the key's neighbours matter here.
        rest = [o for o in job if o != line]
        parsed = OverridesParser.create().parse_overrides(rest)
        rest = [o.input_line for o in parsed if not o.is_sweep_override()]
        base = compose("config", overrides=rest)
        node = OmegaConf.select(base, parent) if parent else base
    except (HydraException, OmegaConfBaseException, OverrideParseException):
        node = None
    if parent and not OmegaConf.is_dict(node):
        return f"{line}: no such key"
    known = sorted(str(k) for k in node.keys()) if OmegaConf.is_dict(node) else []
    if not parent:
        known = sorted(set(known) | set(_groups(conf_dir)))
    close = difflib.get_close_matches(leaf, known, n=1) or [
        k for k in known if leaf.startswith(k) or k.startswith(leaf)][:1]
    hint = f"; did you mean {(parent + '.') if parent else ''}{close[0]}?" if close else ""
    owners = _owning_options(conf_dir, parent, leaf)
    if owners:  # the key exists, in another option of the group: name the option to pick
        picks = " or ".join(f"{parent}={o}" for o in owners)
        chosen = next((o for o in job if o.partition("=")[0] == parent), None)
        pick = f"{parent}={owners[0]}" if len(owners) == 1 else "one of them"
        todo = f"use {pick} instead of {chosen}" if chosen else f"add {pick} to the command"
        hint = f"; {key} belongs to {picks}: {todo}"
    where = f"in {parent}" if parent else "at the top level"
    return f"{line}: no such key {where} (allowed: {', '.join(known)}){hint}"


def _describe(err: Exception, conf_dir: Path, job: list[str]) -> str:
    """One line for a Hydra or OmegaConf error, with the allowed values where known."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if isinstance(err, MissingConfigException):
        found = re.search(r"Available options in '([^']+)':\n((?:\t.*(?:\n|$))+)", text)
        if found:
            options = [o.strip() for o in found.group(2).splitlines() if o.strip()]
            return f"{first}: allowed: {', '.join(options)}"
    unknown = re.match(r"Could not override '([^']+)'", first)
    if unknown:
        return _unknown_key(conf_dir, job, unknown.group(1))
    return first


def check_data_file(cfg: DictConfig) -> None:
    """data=file: the file exists, has a supported type and opens as one (numpy only), so a
    missing or wrong file is refused before the pipeline's imports; the full check of its
    arrays runs when the data module is built (the second pass)."""
    if OmegaConf.select(cfg, "data.task") != "file":
        return
    value = str(OmegaConf.select(cfg, "data.path", default="") or "")
    if not value:
        raise ConfigError("data.path is missing: data=file needs data.path=<file.npz|.csv>")
    path = Path(value).expanduser()
    if not path.is_absolute():  # as rnnsweep.data.paths.resolve_path does
        path = Path(os.environ.get("RNNSWEEP_ROOT") or os.getcwd()) / path
    from rnnsweep.data.file_loaders import probe_sequence_file

    probe_sequence_file(path)


def preflight(conf_dir: Path, argv: list[str]) -> int:
    """Compose and validate every job; returns the number of jobs. Raises ConfigError.

    Two passes: every job's groups and keys first, and its data file's existence and type,
    with Hydra and numpy alone, so a misspelt cell or key or a missing file is refused before
    the pipeline (torch, Lightning, MLflow, Optuna) is imported; then every job's values,
    stores and data, which need it."""
    multirun = bool(MULTIRUN_FLAGS & set(argv))
    overrides = [a for a in argv if not a.startswith("-")]
    user = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    GlobalHydra.instance().clear()
    job = user
    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            try:
                jobs = _job_overrides(conf_dir, user, multirun)
                for job in jobs:
                    _check_groups(conf_dir, job)
                    check_data_file(compose("config", overrides=job))
                from rnnsweep.pipeline import prepare

                for job in jobs:
                    cfg = prepare(compose("config", overrides=job))
                    remember([cfg.search.storage, cfg.tracking.uri])
                    preflight_stores(cfg)
            except (HydraException, OmegaConfBaseException) as err:
                raise ConfigError(_describe(err, conf_dir, job)) from None
    finally:
        GlobalHydra.instance().clear()
    return len(jobs)


def preflight_stores(cfg: DictConfig) -> None:
    """The study storage and tracking server answer, before any job creates anything."""
    from rnnsweep.search.study import preflight_job
    from rnnsweep.tracking import check_reachable

    env = os.environ.get("MLFLOW_TRACKING_URI")
    tracking = [(env or cfg.tracking.uri, "MLFLOW_TRACKING_URI" if env else "tracking.uri")]
    stores = tracking if not cfg.search.study else [(cfg.search.storage, "search.storage"),
                                                         *tracking]
    for url, key in stores:
        problem = userinfo_problem(url)
        if problem:
            raise ConfigError(f"{key}={redact(url)}: {problem}")
    preflight_job(cfg)
    check_reachable(*tracking[0])


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
    from rnnsweep.errors import infrastructure_cause

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
    from rnnsweep.signals import (
        Interrupted,
        end_of_job_in_worker,
        install_handlers,
        job_started_in_worker,
    )

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
        halt = storage_error(cfg, err)
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
