"""The command line's overrides before Hydra sees them: plural keys expanded into sweeps,
every job of a sweep listed as Hydra's basic sweeper will launch it, and one line naming
the key, the allowed values and the closest one for a group option or key that does not
exist (Hydra's own messages name neither)."""

from __future__ import annotations

import difflib
import itertools
import re
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnsweep.errors import ConfigError

MULTIRUN_FLAGS = {"-m", "--multirun"}


def _expand_plural(argv: list[str], plural: str, singular: str,
                   values: Callable[[str, str], list[str]], what: str) -> list[str]:
    """`plural=<several>` as the sweep Hydra runs: `singular=v1,v2,...` (one study per
    value). It needs -m and may not stand beside `singular` (with or without a +/~ prefix);
    `values(arg, body)` parses the body or raises ConfigError naming the argument."""
    out = []
    for arg in argv:
        if not arg.startswith(f"{plural}="):
            out.append(arg)
            continue
        parsed = values(arg, arg.split("=", 1)[1].strip())
        if not MULTIRUN_FLAGS & set(argv):
            raise ConfigError(f"{arg}: one study per {what} needs -m (multirun)")
        if any(a.lstrip("+~").startswith(f"{singular}=") for a in argv):
            raise ConfigError(f"{arg}: give {singular} or {plural}, not both")
        out.append(f"{singular}=" + ",".join(parsed))
    return out


def _curve_sizes(arg: str, body: str) -> list[str]:
    values = [v.strip() for v in body.strip("[]").split(",") if v.strip()]
    if not (body.startswith("[") and body.endswith("]")) or len(values) < 2:
        raise ConfigError(f"{arg}: a learning curve needs a list of at least two sizes, "
                          "e.g. data.sizes=[0.1,0.25,0.5,1]")
    return values


def _repeat_numbers(arg: str, body: str) -> list[str]:
    if not re.fullmatch(r"[0-9]+", body) or int(body) < 1:
        raise ConfigError(f"{arg}: the number of independent searches per study must be "
                          "an integer >= 1, e.g. search.repeats=3")
    return [str(r) for r in range(int(body))]


def expand_sizes(argv: list[str]) -> list[str]:
    """`data.sizes=[0.05,0.1,0.25]` (a learning curve's sizes, rnnsweep.data.sizes) as the
    sweep Hydra runs: `data.size=0.05,0.1,0.25`, one study per cell and size. At least two
    sizes, each once, in increasing order, and -m; else one line naming data.sizes."""
    return _expand_plural(argv, "data.sizes", "data.size", _curve_sizes, "size")


def expand_repeats(argv: list[str]) -> list[str]:
    """`search.repeats=3` (independent searches per study, rnnsweep.search.repeats) as the
    sweep Hydra runs: `search.repeat=0,1,2`, one study per cell, size and repeat. An integer
    >= 1, -m, and not beside search.repeat; else one line naming search.repeats."""
    return _expand_plural(argv, "search.repeats", "search.repeat", _repeat_numbers, "repeat")


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


def job_overrides(conf_dir: Path, overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job Hydra will launch (the basic sweeper's expansion)."""
    parser = OverridesParser.create()
    parsed = _parse(parser, overrides)
    if not multirun:
        if any(o.is_sweep_override() for o in parsed):
            bad = next(o for o in parsed if o.is_sweep_override())
            raise ConfigError(f"{bad.input_line}: a list of values needs -m (multirun)")
        return [overrides]
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    check_groups(conf_dir, plain)
    base = compose("config", overrides=plain, return_hydra_config=True)
    params = OmegaConf.select(base, "hydra.sweeper.params") or {}
    merged: OrderedDict[str, str] = OrderedDict((k, f"{k}={v}") for k, v in params.items())
    for o in parsed:
        merged[o.get_key_element()] = o.input_line
    jobs = cross(parser.parse_overrides(list(merged.values())))
    _check_curve_sizes(parsed)
    return jobs


def cross(parsed: list[Override]) -> list[list[str]]:
    """Every combination of the sweep's values, the last key varying fastest: what Hydra's
    basic sweeper launches (its split_arguments, which Hydra keeps private), from Hydra's
    public Override API."""
    lists: OrderedDict[str, list[str]] = OrderedDict()
    for o in parsed:
        key = o.get_key_element()
        if not o.is_sweep_override():
            lists[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            lists[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise ConfigError(f"{o.input_line}: an interval sweep needs a sampler, not -m; "
                              "list the values instead")
    return [list(job) for job in itertools.product(*lists.values())]


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


def group_options(group: Path) -> list[str]:
    """A config group folder's options: its YAML files' names, sorted."""
    return sorted(p.stem for p in group.glob("*.yaml"))


def _groups(conf_dir: Path) -> list[str]:
    return sorted(d.name for d in conf_dir.iterdir() if d.is_dir() and d.name != "hydra")


def check_groups(conf_dir: Path, overrides: list[str]) -> None:
    """A config group's value must name one of its files: list them when it does not."""
    for line in overrides:
        key, eq, value = line.partition("=")
        name = key.lstrip("+~")
        group = conf_dir / name
        if not eq or not name or not group.is_dir():
            continue
        options = group_options(group)
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
    options = group_options(folder) if group and folder.is_dir() else []
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


def describe(err: Exception, conf_dir: Path, job: list[str]) -> str:
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
