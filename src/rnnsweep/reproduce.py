"""`make reproduce RUN=<run id>`: retrain a run from its `reproduce` tag, in this checkout.

The tag is free text that anyone who can write to the MLflow store can change (on a shared
server without auth, any colleague or intruder), so it is read as data, never as a command:
it must parse as `python train.py key=value ...`, and what runs is always this interpreter
(the project's .venv, activated or not) with this project's own train.py (`project_root`)
and the tag's overrides. The overrides must stay inside the project's config tree (no Hydra
settings, no class names, no interpolations, no redirected stores), make a single run
(search=none), agree with the values the run logged as MLflow params (unlike tags, params
cannot be changed once logged) and pass the same preflight as a typed command. Anything else
is refused in one line, exit 2, and nothing runs.

A study (parent) run has no command of its own: its best trial's is checked and run. The
store is MLFLOW_TRACKING_URI, else the project's default (sqlite:///mlruns/mlflow.db under the
current folder, as `make ui` reads it).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rnnsweep.redact import redact

DEFAULT_STORE = "sqlite:///mlruns/mlflow.db"
EXIT_REFUSED = 2
ALLOWED = ("allowed: python train.py key=value ... with search=none and this checkout's config "
           "keys (no flags, shell syntax, hydra*, paths.*, tracking.uri and other stores, "
           "_target_-like keys or "
           "${...}), agreeing with the run's logged params")
# `python`, `python3`, `python3.11`: a bare name only; it is replaced by sys.executable anyway.
PYTHON = re.compile(r"python[0-9.]*")
# Keys that make Hydra/OmegaConf import and call whatever class or function the value names.
INSTANTIATION_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")
# Roots of keys that decide where results go: a tag must not redirect them.
REDIRECTING_ROOTS = ("paths", "tracking")
# tracking.* keys that name nothing outside the store the run came from: a trial whose job
# set them can still be reproduced.
HARMLESS_TRACKING_KEYS = ("tracking.register_best", "tracking.experiment",
                          "tracking.sweep_id")
# In every trial's tag from a shared study (its job's override), unused by a single run
# (search=none opens no study storage): dropped rather than refused, so those tags work.
UNUSED_BY_A_SINGLE_RUN = "search.storage"
# What shlex's punctuation mode splits off unquoted words: a shell's command separators,
# pipes, redirections and subshells.
SHELL_OPERATORS = set("();<>|&")


class RefusedTag(Exception):
    """The tag is not a command this checkout will run; the message says why, in one line."""


def project_root() -> Path:
    """The project folder whose train.py runs: RNNSWEEP_ROOT, else the current folder (where
    `make reproduce` runs and whose mlruns/ it reads), else the checkout this package is in;
    the first one holding train.py beside conf/. Never a path the tag names."""
    candidates = [Path(os.environ["RNNSWEEP_ROOT"])] if os.environ.get("RNNSWEEP_ROOT") else []
    candidates += [Path.cwd(), Path(__file__).resolve().parents[2]]
    for root in candidates:
        if (root / "train.py").is_file() and (root / "conf").is_dir():
            return root.resolve()
    raise SystemExit("make reproduce: no train.py beside conf/ in "
                     f"{' or '.join(str(c) for c in candidates)} (run it in the project "
                     "folder, or set RNNSWEEP_ROOT)")


def printable(text: str) -> str:
    """One line of text from the tag: passwords masked, newlines and control characters
    (terminal escapes) escaped."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in redact(text))


def shown(text: str) -> str:
    """A token of the tag, quoted as a shell would need it, as printable()."""
    return printable(shlex.quote(text))


def split_tag(command: str) -> list[str]:
    """The tag's words, refusing what only a shell would give meaning to."""
    try:
        words = shlex.split(command)
        # The same split with `;`, `|`, `&`, `<`, `>`, `(`, `)` as separate tokens when not
        # quoted: a difference means the tag holds shell syntax (a second command, a pipe).
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, ""
        punctuated = list(lexer)
    except ValueError as err:
        raise RefusedTag(f"not a command line ({err})") from None
    operator = next((w for w in punctuated if w and set(w) <= SHELL_OPERATORS), None)
    if operator is not None or punctuated != words:
        raise RefusedTag(f"shell syntax {shown(operator or command)} in the tag "
                         "(no shell runs it)")
    return words


def check_override(word: str) -> None:
    """One `key=value` (or `~key`) that stays inside the project's config tree."""
    if word.startswith("-"):
        raise RefusedTag(f"flag {shown(word)}: a tag may only hold key=value overrides")
    key, eq, _ = word.partition("=")
    bare = key.lstrip("+~")
    if not bare or (not eq and not key.startswith("~")):
        raise RefusedTag(f"{shown(word)} is not a key=value override")
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:  # the key as train.py's Hydra will read it, not only as this function splits it
        parsed = OverridesParser.create().parse_override(word)
    except HydraException as err:
        raise RefusedTag(f"{shown(word)} is not a valid override "
                         f"({str(err).strip().splitlines()[0]})") from None
    if "@" in bare or parsed.package is not None:
        raise RefusedTag(f"{shown(word)}: package overrides (@) move config nodes; not allowed")
    if parsed.key_or_group != bare:
        raise RefusedTag(f"{shown(word)}: Hydra reads the key as "
                         f"{shown(parsed.key_or_group)}, not a plain key")
    if bare.startswith("hydra"):
        # hydra.callbacks, hydra/launcher, hydra.job.env_set, hydra.run.dir: code and files
        # outside the job's own config.
        raise RefusedTag(f"{shown(word)}: Hydra's own settings are never taken from a tag")
    named = next((k for k in INSTANTIATION_KEYS if k in word), None)
    if named:
        raise RefusedTag(f"{shown(word)}: {named} makes the config import and call a class")
    if "${" in word:
        raise RefusedTag(f"{shown(word)}: interpolations and resolvers (${{...}}) are not "
                         "allowed")
    root = re.split(r"[./]", bare, maxsplit=1)[0]
    if root in REDIRECTING_ROOTS and bare not in HARMLESS_TRACKING_KEYS:
        raise RefusedTag(f"{shown(word)}: a tag must not say where results are written "
                         "(use MLFLOW_TRACKING_URI)")


def tag_overrides(command: str) -> tuple[list[str], list[str]]:
    """(the overrides to pass to this checkout's train.py, the ones dropped); raises
    RefusedTag unless the tag reads `python train.py <override>...`."""
    words = split_tag(command)
    if len(words) < 2:
        raise RefusedTag(f"{shown(command)} is not `python train.py ...`")
    program, script, *rest = words
    if not PYTHON.fullmatch(program):
        raise RefusedTag(f"runs {shown(program)}, not python")
    if script.startswith("-"):
        raise RefusedTag(f"python flag {shown(script)}: only train.py is run")
    if script != "train.py":
        raise RefusedTag(f"runs {shown(script)}, not this checkout's train.py")
    kept, dropped = [], []
    for word in rest:
        if word.lstrip("+~").partition("=")[0] == UNUSED_BY_A_SINGLE_RUN:
            dropped.append(word)
            continue
        check_override(word)
        kept.append(word)
    return kept, dropped


@contextmanager
def project_env(root: Path) -> Iterator[None]:
    """RNNSWEEP_ROOT set to the checkout while composing, as train.py sets it for the run."""
    old = os.environ.get("RNNSWEEP_ROOT")
    os.environ["RNNSWEEP_ROOT"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("RNNSWEEP_ROOT", None)
        else:
            os.environ["RNNSWEEP_ROOT"] = old


def compose_config(conf_dir: Path, overrides: list[str] | None = None) -> Any:
    """The job's config, composed with Hydra's compose API (nothing resolved or instantiated)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            return compose("config", overrides=overrides or [])
    finally:
        GlobalHydra.instance().clear()


def sampled_paths(cfg: Any) -> set[tuple[str, str]]:
    """(param name, config path) of every value a study samples: `search.space` and the
    parameter-matched budget, as rnnsweep.search.space names them in the run's params."""
    from omegaconf import OmegaConf

    pairs = set()
    space = OmegaConf.select(cfg, "search.space") or {}
    for name, p in space.items():
        if OmegaConf.is_dict(p) and p.get("path"):
            pairs.add((str(name), str(p.path)))
    budget = OmegaConf.select(cfg, "search.budget.path")
    if budget:
        pairs.add(("param_budget", str(budget)))
    return pairs


def same_value(logged: str, value: Any) -> bool:
    """A param (MLflow stores str(value)) against a config value, numbers as numbers."""
    if isinstance(value, bool) or value is None:
        return logged.strip().lower() == str(value).lower()
    if isinstance(value, int | float):
        try:
            return math.isclose(float(logged), float(value), rel_tol=1e-12, abs_tol=0.0)
        except ValueError:
            return False
    return logged == str(value)


def check_against_params(conf_dir: Path, cfg: Any, params: Mapping[str, str]) -> None:
    """The tag's config makes a single run with the values the run logged.

    Names map to paths through the project's own search space as well as the tag's (a tag
    could remap `search.space.*.path` to dodge the check, never the project's files)."""
    from omegaconf import OmegaConf

    # search.study decides whether a study starts; the name must be none's as well.
    if OmegaConf.select(cfg, "search.name") != "none" or \
            OmegaConf.select(cfg, "search.study", default=True) is not False:
        raise RefusedTag("the tag does not make a single run (search=none); a tag never "
                         "starts a study")
    pairs = sampled_paths(compose_config(conf_dir)) | sampled_paths(cfg)
    # A run's data seed too: a re-evaluation seed trains on a draw of its own.
    pairs |= {("seed", "seed"), ("data.seed", "data.seed")}
    checked = 0
    for name, path in sorted(pairs):
        if name not in params:
            continue
        value = OmegaConf.select(cfg, path, default=None)
        if not same_value(params[name], value):
            raise RefusedTag(f"{path}={shown(str(value))} in the tag, but the run logged "
                             f"{name}={shown(params[name])}")
        checked += 1
    if not checked:
        raise RefusedTag("the run logged no seed or sampled values to check the tag against")


def validate(conf_dir: Path, overrides: list[str], params: Mapping[str, str]) -> None:
    """Compose the overrides and check them against the run's params, then run train.py's
    preflight on them. The params first: a study's preflight would open its storage."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from rnnsweep.errors import ConfigError, DataError
    from rnnsweep.preflight import preflight

    try:
        cfg = compose_config(conf_dir, overrides)
    except (HydraException, OmegaConfBaseException) as err:
        cfg, failure = None, f"{err}".strip() or type(err).__name__
    if cfg is not None:
        check_against_params(conf_dir, cfg, params)
    try:
        preflight(conf_dir, overrides)  # names a bad key or value, with the allowed ones
    except (ConfigError, DataError) as err:
        raise RefusedTag(f"{err}".strip() or type(err).__name__) from None
    if cfg is None:
        raise RefusedTag(failure)


def find_run(run_id: str, tracking_uri: str) -> tuple[str, str, dict[str, str]]:
    """(the tag, the run whose tag it is, that run's params)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        if not db.is_file():  # the client would create an empty store
            raise SystemExit(f"make reproduce: no MLflow store at {db.resolve()} (run it in "
                             "the project folder, or set MLFLOW_TRACKING_URI)")
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
        source = run_id
        if "reproduce" not in run.data.tags and "best_trial_run_id" in run.data.tags:
            source = run.data.tags["best_trial_run_id"]
            run = client.get_run(source)
    except MlflowException as err:
        raise SystemExit(f"make reproduce: run {run_id!r} not found in {redact(tracking_uri)}: "
                         f"{str(err).splitlines()[0]}") from None
    command = run.data.tags.get("reproduce")
    if not command:
        raise SystemExit(f"make reproduce: run {run_id} has no `reproduce` tag (only trials "
                         "and studies with a finished trial have one)")
    return command, source, dict(run.data.params)


def reproduce_argv(run_id: str, tracking_uri: str) -> tuple[list[str], str]:
    """(argv to run, the run whose command it is); raises RefusedTag."""
    command, source, params = find_run(run_id, tracking_uri)
    root = project_root()
    overrides, dropped = tag_overrides(command)
    with project_env(root):
        validate(root / "conf", overrides, params)
    for word in dropped:
        print(f"make reproduce: dropped {shown(word)}: a single run opens no study storage",
              file=sys.stderr)
    return [sys.executable, str(root / "train.py"), *overrides], source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make reproduce RUN=<run id>",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--dry-run", action="store_true", help="print the command only")
    args = parser.parse_args(argv)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE
    try:
        command, source = reproduce_argv(args.run_id, uri)
    except RefusedTag as err:
        print(f"make reproduce: run {printable(args.run_id)}: {printable(str(err))}; "
              f"{ALLOWED}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"reproducing run {source}: {redact(shlex.join(command))}", file=sys.stderr,
          flush=True)
    if args.dry_run:
        return 0
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["RNNSWEEP_ROOT"] = str(Path(command[1]).parent)
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
