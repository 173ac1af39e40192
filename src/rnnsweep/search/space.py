"""The search space from `search.space`: suggest values and write them into a training setup."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import optuna
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from rnnsweep.training import TrainSetup


def suggest(trial: optuna.Trial, space: DictConfig) -> dict[str, Any]:
    """Sample every parameter; returns {optuna name: value}."""
    values: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "int":
            step = int(p.step) if p.step else 1
            values[name] = trial.suggest_int(name, int(p.low), int(p.high), step=step, log=p.log)
        elif p.type == "float":
            values[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
        else:
            values[name] = trial.suggest_categorical(name, list(p.choices))
    return values


def apply(setup: TrainSetup, space: DictConfig, values: dict[str, Any]) -> TrainSetup:
    """A copy of setup with each sampled value written to its config path."""
    return setup.with_values({space[name].path: value for name, value in values.items()})


def overrides(space: DictConfig, values: dict[str, Any]) -> list[str]:
    """Hydra overrides (path=value) that set these values; repr keeps floats exact."""
    return [f"{space[name].path}={value!r}" for name, value in values.items()]


def fingerprint(space: DictConfig) -> str:
    """Canonical text of the space, stored with the study to detect a changed search space."""
    plain = OmegaConf.to_container(space, resolve=True)
    return json.dumps(plain, sort_keys=True)


def matched_suffix(search: DictConfig) -> str:
    """Parameter-matched studies get their own name: their space differs from the plain one."""
    return "-matched" if search.match_params else ""
