"""The search space from `search.space`: suggest values and write them into a config."""

from __future__ import annotations

import json
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf


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


def apply(cfg: DictConfig, space: DictConfig, values: dict[str, Any]) -> DictConfig:
    """A copy of cfg with each sampled value written to its config path."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for name, value in values.items():
        OmegaConf.update(out, space[name].path, value, merge=False)
    return out


def overrides(space: DictConfig, values: dict[str, Any]) -> list[str]:
    """Hydra overrides (path=value) that set these values; repr keeps floats exact."""
    return [f"{space[name].path}={value!r}" for name, value in values.items()]


def fingerprint(space: DictConfig) -> str:
    """Canonical text of the space, stored with the study to detect a changed search space."""
    plain = OmegaConf.to_container(space, resolve=True)
    return json.dumps(plain, sort_keys=True)


def match_params(cfg: DictConfig) -> DictConfig:
    """search.match_params=true (Chung et al. 2014): the range that tunes model.hidden_size is
    replaced by `search.budget`, a range of parameter counts; each cell derives its hidden
    size from the sampled budget, so cells are compared at equal parameter counts."""
    s = cfg.search
    if not s.match_params or not s.study:
        return cfg
    kept = {k: v for k, v in s.space.items() if v.path != "model.hidden_size"}
    s.space = {**kept, "param_budget": s.budget}
    return cfg


def matched_suffix(cfg: DictConfig) -> str:
    """Parameter-matched studies get their own name: their space differs from the plain one."""
    return "-matched" if cfg.search.match_params else ""
