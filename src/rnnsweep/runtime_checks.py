"""Checks of the values that reach other libraries, against what they accept on this
machine: Lightning's precisions and accelerators, and every class a config names by
`_target_` (cell, optimiser, scheduler, Trainer, sampler, pruner; rnnsweep.targets).
Kept apart from rnnsweep.validation because they import torch, Lightning and Optuna.
"""

from __future__ import annotations

from omegaconf import DictConfig

from rnnsweep.errors import ConfigError, check_choice, require

# rnnsweep's own trainer keys: read by rnnsweep.training, never passed to the Trainer.
TRAINER_OWN_KEYS = ("budget_unit", "max_steps", "max_epochs", "val_check_steps",
                    "early_stopping_patience", "stop_at", "progress_bar", "num_threads",
                    "memory_probe_batches")
# Trainer arguments rnnsweep sets itself (rnnsweep.training.train_model).
TRAINER_SET_BY_RNNSWEEP = ("callbacks", "logger", "enable_checkpointing", "enable_progress_bar",
                           "enable_model_summary", "num_sanity_val_steps", "val_check_interval",
                           "check_val_every_n_epoch")


def lightning_precisions() -> list[str]:
    """The precision values Lightning's Trainer accepts (its own type), as config strings;
    Transformer Engine's only where that package is installed."""
    import importlib.util
    from typing import get_args

    from lightning.fabric.plugins.precision.precision import (
        _PRECISION_INPUT_STR,
        _PRECISION_INPUT_STR_ALIAS,
    )

    engine = importlib.util.find_spec("transformer_engine") is not None
    return [p for p in (*get_args(_PRECISION_INPUT_STR), *get_args(_PRECISION_INPUT_STR_ALIAS))
            if engine or not p.startswith("transformer-engine")]


def lightning_accelerators() -> dict[str, bool]:
    """Accelerator names Lightning's Trainer accepts -> whether this machine has one."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    names = {n: bool(AcceleratorRegistry[n]["accelerator"].is_available())
             for n in AcceleratorRegistry.available_accelerators()}
    names["gpu"] = names.get("cuda", False) or names.get("mps", False)
    return {"auto": True, **names}


def check_trainer(t: DictConfig) -> None:
    """The trainer values that reach Lightning and torch, against what they accept here."""
    require(t.num_threads is None or t.num_threads >= 1, "trainer.num_threads", t.num_threads,
             "must be an integer >= 1, or null (the cores divided among local workers)")
    require(t.devices >= 1, "trainer.devices", t.devices, "must be an integer >= 1")
    require(t.memory_probe_batches >= 0, "trainer.memory_probe_batches",
             t.memory_probe_batches, "must be an integer >= 0")
    precisions = lightning_precisions()
    require(t.precision in precisions, "trainer.precision", t.precision,
             "allowed (Lightning): " + ", ".join(precisions))
    accelerators = lightning_accelerators()
    check_choice("trainer.accelerator", t.accelerator, tuple(sorted(accelerators)))
    here = ", ".join(sorted(n for n, ok in accelerators.items() if ok))
    require(accelerators[t.accelerator], "trainer.accelerator", t.accelerator,
             f"this machine has none; available here: {here}")
    gpu = t.accelerator in ("cuda", "gpu") or (t.accelerator == "auto" and accelerators["gpu"])
    if t.precision in ("16-mixed", "16") and not gpu:
        raise ConfigError(f"trainer.precision={t.precision!r} is invalid on the CPU: float16 "
                          "mixed precision needs a GPU; use bf16-mixed or 32-true")
    if t.accelerator in ("cuda", "gpu") and accelerators.get("cuda"):
        import torch

        count = torch.cuda.device_count()
        require(t.devices <= count, "trainer.devices", t.devices,
                 f"this machine has {count} CUDA device(s)")


def check_libraries(cfg: DictConfig) -> None:
    """What a typed config hands to torch, Lightning and Optuna, against what they accept
    here: the trainer's device and precision, and every class it names."""
    check_trainer(cfg.trainer)
    check_classes(cfg)


def check_classes(cfg: DictConfig) -> None:
    """Every class the config names imports, fits its role and takes the given keys."""
    import torch

    from rnnsweep.cells import BUILTIN, CELL_ARGUMENTS
    from rnnsweep.targets import check_target

    name, target = cfg.cell.name, cfg.cell["_target_"]
    if name in BUILTIN and target != BUILTIN[name]:
        raise ConfigError(f"cell.name={name} is invalid with cell._target_={target}: {name} "
                          f"names {BUILTIN[name]}; give your cell a name of its own, e.g. "
                          f"cell.name={target.rsplit('.', 1)[-1].lower()}")
    check_target("cell", cfg.cell, torch.nn.Module, passed=CELL_ARGUMENTS)
    check_target("optim", cfg.optim, torch.optim.Optimizer, passed=("params",))
    if cfg.scheduler is not None:
        check_target("scheduler", cfg.scheduler, torch.optim.lr_scheduler.LRScheduler,
                     passed=("optimizer",))
    import lightning.pytorch as pl

    check_target("trainer", cfg.trainer, pl.Trainer, passed=TRAINER_SET_BY_RNNSWEEP,
                 skip=TRAINER_OWN_KEYS)
    if cfg.search.study:
        import optuna

        check_target("search.sampler", cfg.search.sampler, optuna.samplers.BaseSampler)
        check_target("search.pruner", cfg.search.pruner, optuna.pruners.BasePruner)
