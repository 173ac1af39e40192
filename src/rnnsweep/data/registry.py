"""A task's data module from its config: `data._target_` names the TensorDataModule class, as
cells and optimisers name theirs, and the class's `config` dataclass (a DataConfig) checks
the rest of `data`. A task of one's own is its module and one YAML file in conf/data/."""

from __future__ import annotations

from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnsweep.data.base import TensorDataModule
from rnnsweep.data.sizes import check_size
from rnnsweep.errors import ConfigError

# The shipped tasks' classes, for configs stored before data._target_ existed (they name
# only their task) and for messages.
BUILT_IN = {
    "adding": "rnnsweep.data.adding.AddingDataModule",
    "anbn": "rnnsweep.data.anbn.AnbnDataModule",
    "chorales": "rnnsweep.data.chorales.ChoralesDataModule",
    "file": "rnnsweep.data.file.FileDataModule",
}


def task_names() -> list[str]:
    return sorted(BUILT_IN)


def module_class(cfg: DictConfig) -> type[TensorDataModule]:
    """The data module class `data._target_` names (a stored config's task where it has
    none); ConfigError naming the key otherwise."""
    target = cfg.get("_target_") or BUILT_IN.get(str(cfg.get("task")))
    if not target:
        raise ConfigError(f"data.task={cfg.get('task')!r} has no data._target_: name its "
                          f"TensorDataModule class, or pick data={'|'.join(task_names())}")
    try:
        cls = get_class(str(target))
    except Exception:  # noqa: BLE001 (Hydra raises several kinds; one line says which key)
        raise ConfigError(
            f"data._target_={target!r} is invalid: not an importable class") from None
    if not (isinstance(cls, type) and issubclass(cls, TensorDataModule)):
        raise ConfigError(f"data._target_={target!r} is invalid: must be a subclass of "
                          "rnnsweep.data.base.TensorDataModule")
    return cls


def data_config(cfg: DictConfig, cls: type[TensorDataModule]) -> Any:
    """Check `data` against the data module's config dataclass; the typed object."""
    try:
        typed = OmegaConf.merge(OmegaConf.structured(cls.config), cfg)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or ""
        raise ConfigError(f"data.{key}: {str(err).splitlines()[0]}") from None
    obj = OmegaConf.to_object(typed)
    check_size(str(obj.size), obj.task, cls.curves)
    for name in ("batch_size",):
        if getattr(obj, name) < 1:
            raise ConfigError(f"data.{name}={getattr(obj, name)} is invalid: must be >= 1")
    return obj


def experiment_name(cfg: DictConfig) -> str:
    """The MLflow experiment (and reports/ folder) of a task's studies: its data module
    class names it (the task's name; for your own data `file-<file name>`)."""
    return module_class(cfg).experiment_name(cfg)


def build_datamodule(cfg: DictConfig) -> TensorDataModule:
    cls = module_class(cfg)
    return cls(data_config(cfg, cls))


def build_with_seed(cfg: DictConfig, seed: int) -> TensorDataModule:
    """The data module of `cfg` (a `data` section) drawn with data.seed = `seed`: the same
    task, size and settings through the same checks, so only the draw differs."""
    return build_datamodule(OmegaConf.merge(cfg, {"seed": seed}))
