"""Config nodes that name a class by `_target_`: checked before anything is built, built by
Hydra's `instantiate` when used.

A check imports the class (Hydra's own locator) and binds the node's keys to its signature,
so a misspelt or foreign key is refused with one line naming the key and the keys the class
takes, as strictly as a typed schema would, yet any class can be named on the command line.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from rnnsweep.errors import ConfigError

# Keys Hydra reads itself, and labels rnnsweep reads; never constructor arguments.
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_convert_", "_recursive_", "_args_"})
LABEL_KEYS = frozenset({"name"})


def plain(node: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    return dict(node)


def constructor_keys(node: DictConfig | Mapping[str, Any], skip: Iterable[str] = ()) -> dict:
    """The node's keys that reach the constructor."""
    drop = HYDRA_KEYS | LABEL_KEYS | frozenset(skip)
    return {k: v for k, v in plain(node).items() if k not in drop}


def build(node: DictConfig | Mapping[str, Any], skip: Iterable[str] = (), **kwargs: Any) -> Any:
    """instantiate(node) without its label keys and the keys in `skip` (rnnsweep's own)."""
    data = plain(node)
    drop = LABEL_KEYS | frozenset(skip)
    return instantiate({k: v for k, v in data.items() if k not in drop}, **kwargs,
                       _convert_="all")


def class_name(node: DictConfig | Mapping[str, Any]) -> str:
    return str(plain(node).get("_target_", "")).rsplit(".", 1)[-1]


def check_target(key: str, node: Any, base: type | None = None,
                 passed: Iterable[str] = (), skip: Iterable[str] = ()) -> type:
    """`node` names an importable class (a subclass of `base`) whose signature takes every
    key of the node, besides the arguments rnnsweep passes itself (`passed`) and rnnsweep's
    own keys (`skip`). Returns the class."""
    if not OmegaConf.is_dict(node) and not isinstance(node, Mapping):
        raise ConfigError(f"{key}={node!r} is invalid: {key} is a section with a _target_ "
                          "class and its arguments")
    target = plain(node).get("_target_")
    if not isinstance(target, str) or not target:
        raise ConfigError(f"{key}._target_ is missing: name the class to build, e.g. "
                          f"{key}._target_=package.module.Class")
    try:
        cls = get_class(target)
    except Exception as err:  # ImportError, AttributeError, not a class
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(f"{key}._target_={target} is invalid: cannot import it ({reason})") \
            from None
    if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{key}._target_={target} is invalid: it must be a subclass of "
                          f"{base.__module__}.{base.__qualname__}")
    keys = constructor_keys(node, skip)
    taken = set(passed) & set(keys)
    if taken:
        first = sorted(taken)[0]
        raise ConfigError(f"{key}.{first} is invalid: rnnsweep sets {first} itself; remove it")
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return cls
    allowed = [n for n, p in params.items() if n not in set(passed) and n != "self"
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for k in keys:
        if k not in allowed:
            close = difflib.get_close_matches(k, allowed, n=1)
            hint = f"; did you mean {key}.{close[0]}?" if close else ""
            raise ConfigError(f"{key}.{k} is invalid for {target}: allowed: "
                              f"{', '.join(allowed) or 'no keys'}{hint}")
    return cls
