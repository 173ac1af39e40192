"""Task name -> (config dataclass, DataModule). New tasks register here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnsweep.data.adding import AddingDataConfig, AddingDataModule
from rnnsweep.data.anbn import AnbnDataConfig, AnbnDataModule
from rnnsweep.data.base import TensorDataModule
from rnnsweep.data.chorales import ChoralesDataConfig, ChoralesDataModule
from rnnsweep.data.file import FileDataConfig, FileDataModule
from rnnsweep.data.sizes import check_size
from rnnsweep.errors import ConfigError


@dataclass(frozen=True)
class Task:
    config: type
    module: Callable[[Any], TensorDataModule]
    # data.size may be a learning-curve point (rnnsweep.data.sizes): a fraction or a count
    curves: bool = True


TASKS: dict[str, Task] = {
    "adding": Task(AddingDataConfig, AddingDataModule),
    "anbn": Task(AnbnDataConfig, AnbnDataModule, curves=False),  # sizes are string lengths
    "chorales": Task(ChoralesDataConfig, ChoralesDataModule),
    "file": Task(FileDataConfig, FileDataModule),
}


def task_names() -> list[str]:
    return sorted(TASKS)


def data_config(cfg: DictConfig) -> Any:
    """Check `data` against its task's dataclass and return the typed object."""
    task = cfg.get("task")
    if task not in TASKS:
        raise ConfigError(f"data.task={task!r} is invalid: allowed: {', '.join(task_names())}")
    try:
        typed = OmegaConf.merge(OmegaConf.structured(TASKS[task].config), cfg)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or ""
        raise ConfigError(f"data.{key}: {str(err).splitlines()[0]}") from None
    obj = OmegaConf.to_object(typed)
    check_size(str(obj.size), task, TASKS[task].curves)
    for name in ("batch_size",):
        if getattr(obj, name) < 1:
            raise ConfigError(f"data.{name}={getattr(obj, name)} is invalid: must be >= 1")
    return obj


def experiment_name(cfg: DictConfig) -> str:
    """The MLflow experiment (and reports/ folder) of a task's studies: the task's name, or
    for your own data `file-<file name>`, so two data files never share one."""
    task = str(cfg.get("task"))
    path = str(cfg.get("path") or "")
    return f"{task}-{Path(path).stem}" if task == "file" and path else task


def build_datamodule(cfg: DictConfig) -> TensorDataModule:
    typed = data_config(cfg)
    return TASKS[typed.task].module(typed)


def build_with_seed(cfg: DictConfig, seed: int) -> TensorDataModule:
    """The data module of `cfg` (a `data` section) drawn with data.seed = `seed`: the same
    task, size and settings through the same checks, so only the draw differs."""
    return build_datamodule(OmegaConf.merge(cfg, {"seed": seed}))
