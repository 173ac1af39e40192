"""`python train.py --help`: the option lists of its config groups come from conf/ itself.

Each option's YAML file carries its one-line description as a `# help:` comment, so a new
cell, task or profile is its module (where it needs one) and one YAML file: --help lists it
without an edit elsewhere. conf/hydra/help/rnnsweep.yaml calls two OmegaConf resolvers:

    ${rnnsweep_options:cell}        every option of the group, its default first, with help
    ${rnnsweep_names:data_profile}  the group's option names only, wrapped

Hydra resolves the template in the process that prints the help, after
`rnnsweep.cli.prepare_environment` has named the conf folder (RNNSWEEP_CONF_DIR).
"""

from __future__ import annotations

import functools
import os
import re
import textwrap
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from rnnsweep.overrides import group_options

CONF_ENV = "RNNSWEEP_CONF_DIR"
NAME_COLUMN = 18  # where option names start; their help follows at NAME_COLUMN + 12
HELP_LINE = re.compile(r"^#\s*help:\s*(.+?)\s*$", re.MULTILINE)


def conf_dir() -> Path | None:
    value = os.environ.get(CONF_ENV)
    return Path(value) if value else None


def option_help(path: Path) -> str:
    """The `# help:` line of an option's file ('' when it has none)."""
    match = HELP_LINE.search(path.read_text())
    return match.group(1) if match else ""


def _defaults(file: Path) -> dict[str, str]:
    """group -> option of a file's defaults list (`optional ` dropped)."""
    if not file.exists():
        return {}
    out = {}
    for entry in (yaml.safe_load(file.read_text()) or {}).get("defaults", []):
        if isinstance(entry, dict) and len(entry) == 1:
            (key, value), = entry.items()
            if isinstance(value, str):
                out[key.removeprefix("optional ").removeprefix("override ")] = value
    return out


def default_option(conf: Path, group: str) -> str | None:
    """The group's default: conf/config.yaml's defaults list, or for a nested group a/b the
    defaults list of a's default option."""
    parent, _, child = group.rpartition("/")
    if not parent:
        return _defaults(conf / "config.yaml").get(group)
    owner = default_option(conf, parent)
    return _defaults(conf / parent / f"{owner}.yaml").get(child) if owner else None


def options(conf: Path, group: str) -> list[str]:
    """The group's options, its default first, then by name."""
    names = group_options(conf / group)
    first = default_option(conf, group)
    return ([first] if first in names else []) + [n for n in names if n != first]


def option_lines(group: str) -> str:
    """One line per option: its name and its help, indented under the group's heading."""
    conf = conf_dir()
    return "" if conf is None else _option_lines(conf, group)


# Cached per process: Hydra resolves the help template with every config it composes (the
# preflight composes one per job), and conf/ does not change while a command runs.
@functools.cache
def _option_lines(conf: Path, group: str) -> str:
    lines = []
    for name in options(conf, group):
        text = option_help(conf / group / f"{name}.yaml")
        pad = " " * max(2, 12 - len(name))
        lines.append(f"{' ' * NAME_COLUMN}{name}{pad}{text}".rstrip())
    return "\n".join(lines)


def name_lines(group: str) -> str:
    """The group's option names, wrapped, indented under the group's heading."""
    conf = conf_dir()
    return "" if conf is None else _name_lines(conf, group)


@functools.cache
def _name_lines(conf: Path, group: str) -> str:
    indent = " " * NAME_COLUMN
    return textwrap.fill(" ".join(options(conf, group)), width=90, initial_indent=indent,
                         subsequent_indent=indent)


def register(conf: Path) -> None:
    """Name the conf folder and make both resolvers known to OmegaConf."""
    os.environ[CONF_ENV] = str(conf)
    OmegaConf.register_new_resolver("rnnsweep_options", option_lines, replace=True)
    OmegaConf.register_new_resolver("rnnsweep_names", name_lines, replace=True)
