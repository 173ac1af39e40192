"""Checks of a typed config (rnnsweep.schema) beyond its types; every failure is a
ConfigError naming the key and what is allowed.

- check_values: ranges and consistency, one function per node. They need OmegaConf alone, so
  the preflight's first pass runs them before the pipeline's imports.
- check_libraries: the values that reach other libraries, against what they accept on this
  machine: Lightning's precisions and accelerators, and every class a config names by
  `_target_` (cell, optimiser, scheduler, Trainer, sampler, pruner; rnnsweep.targets).
  torch, Lightning and Optuna are imported inside them, when they run.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnsweep.errors import ConfigError
from rnnsweep.schema import TRAINER_OWN_KEYS, to_structured
from rnnsweep.search.repeats import SEED_SPAN, search_repeat

# Trial k trains with seed + k and re-evaluation seeds start at seed + 1,000,000
# (rnnsweep.search.reeval); every one must stay a 32-bit seed for torch/Lightning.
MAX_SEED = 2**32 - 1 - 2_000_000
PARAM_TYPES = ("int", "float", "categorical")


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """The one-line refusal: `key=value is invalid: allowed` unless ok."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    require(value in allowed, key, value, "allowed: " + ", ".join(allowed))


def checked_values(cfg: DictConfig) -> DictConfig:
    """A composed config typed (rnnsweep.schema.to_structured) and its values checked."""
    typed = to_structured(cfg)
    check_values(typed)
    return typed


def check_values(cfg: DictConfig) -> None:
    """Range and consistency checks that the types alone cannot express."""
    check_model(cfg.model, cfg.data)
    check_optim(cfg.optim)
    require(0 <= cfg.seed <= MAX_SEED, "seed", cfg.seed,
            f"must be an integer in [0, {MAX_SEED}] (trial k trains with seed + k, "
            "re-evaluation seeds start at seed + 1000000; torch takes 32-bit seeds)")
    check_budget(cfg.trainer)
    if cfg.search.study:
        check_search(cfg.search, int(cfg.seed))
        for name, p in cfg.search.space.items():
            _validate_param(cfg, f"search.space.{name}", p)


def check_model(m: DictConfig, data: DictConfig) -> None:
    require(m.num_layers >= 1, "model.num_layers", m.num_layers, "must be an integer >= 1")
    require(m.hidden_size >= 1, "model.hidden_size", m.hidden_size, "must be an integer >= 1")
    require(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be in [0, 1)")
    if m.param_budget is not None:
        require(m.param_budget > 0, "model.param_budget", m.param_budget, "must be > 0")
    check_choice("model.train_objective", m.train_objective, ("step_mean", "sequence_sum"))
    if m.train_objective == "sequence_sum" and data.get("loss_weighting") == "string":
        raise ConfigError("model.train_objective=sequence_sum and data.loss_weighting=string "
                          "weigh sequences differently: keep one (model.train_objective="
                          "step_mean with the string weighting)")


def check_optim(o: DictConfig) -> None:
    require(o.lr > 0, "optim.lr", o.lr, "must be > 0")
    weight_decay = o.get("weight_decay")
    require(weight_decay is None or weight_decay >= 0, "optim.weight_decay", weight_decay,
            "must be >= 0")


def check_budget(t: DictConfig) -> None:
    """rnnsweep's own trainer keys: the budget, its validation interval and early stops."""
    check_choice("trainer.budget_unit", t.budget_unit, ("steps", "epochs"))
    require(t.max_epochs >= 1, "trainer.max_epochs", t.max_epochs, "must be >= 1")
    require(t.max_steps >= 1, "trainer.max_steps", t.max_steps, "must be >= 1")
    require(t.val_check_steps >= 1, "trainer.val_check_steps", t.val_check_steps, "must be >= 1")
    if t.budget_unit == "steps":
        require(t.max_steps % t.val_check_steps == 0, "trainer.max_steps", t.max_steps,
                f"must be a multiple of trainer.val_check_steps ({t.val_check_steps}), "
                "so the last step is validated")
    require(t.gradient_clip_val is None or t.gradient_clip_val > 0,
            "trainer.gradient_clip_val", t.gradient_clip_val, "must be > 0 or null")
    require(t.early_stopping_patience >= 1, "trainer.early_stopping_patience",
            t.early_stopping_patience, "must be >= 1")
    require(t.stop_at is None or math.isfinite(t.stop_at), "trainer.stop_at", t.stop_at,
            "must be a finite number or null")


def check_search(s: DictConfig, seed: int) -> None:
    """A study's settings; `seed` is the job's, which bounds the repeats."""
    require(s.n_trials >= 1, "search.n_trials", s.n_trials, "must be an integer >= 1")
    require(s.n_startup_trials >= 0, "search.n_startup_trials", s.n_startup_trials,
            "must be an integer >= 0")
    require(s.min_sampler_trials >= 0, "search.min_sampler_trials", s.min_sampler_trials,
            "must be an integer >= 0")
    require(s.pruner_warmup_steps >= 0, "search.pruner_warmup_steps",
            s.pruner_warmup_steps, "must be an integer >= 0")
    require(0 <= s.seed < 2**32, "search.seed", s.seed,
            f"must be an integer in [0, {2**32 - 1}] (the sampler's numpy seed)")
    repeat = search_repeat(s)
    top = (MAX_SEED - seed) // SEED_SPAN
    require(0 <= repeat <= top, "search.repeat", repeat,
            f"must be an integer in [0, {top}] (repeat r trains with seeds from seed + "
            f"r x {SEED_SPAN}, which must stay <= {MAX_SEED})")
    check_choice("search.on_changed_settings", s.on_changed_settings,
                  ("refuse", "new_study"))
    check_choice("search.direction", s.direction, ("minimize", "maximize"))
    require(
        0.0 <= s.max_failure_rate <= 1.0,
        "search.max_failure_rate", s.max_failure_rate, "must be in [0, 1]",
    )
    require(s.reeval_seeds >= 0, "search.reeval_seeds", s.reeval_seeds, "must be >= 0")
    require(s.reeval_max_seeds >= s.reeval_seeds, "search.reeval_max_seeds",
            s.reeval_max_seeds, f"must be >= search.reeval_seeds ({s.reeval_seeds})")
    require(s.warm_start_top_k >= 1, "search.warm_start_top_k", s.warm_start_top_k,
            "must be an integer >= 1")
    require(s.reeval_seed_step >= 1, "search.reeval_seed_step", s.reeval_seed_step,
            "must be >= 1")
    require(s.seed_rounds_minutes is None or s.seed_rounds_minutes > 0,
            "search.seed_rounds_minutes", s.seed_rounds_minutes,
            "must be > 0 (minutes from the sweep's start) or null (no limit)")
    require(s.heartbeat_interval >= 1, "search.heartbeat_interval", s.heartbeat_interval,
            "must be an integer >= 1 (seconds)")
    require(s.heartbeat_grace_period > s.heartbeat_interval, "search.heartbeat_grace_period",
            s.heartbeat_grace_period, "must exceed search.heartbeat_interval")
    require(s.retry_failed_trials >= 0, "search.retry_failed_trials",
            s.retry_failed_trials, "must be >= 0")
    require(len(s.space) > 0, "search.space", "{}", "needs at least one parameter")


# Keys read once per job, before any trial: a sampled value would be logged on the trial
# but never used (the data are built once; the seed, threads, device and budget are the
# study's). prefix -> why.
PER_JOB_PREFIXES = {
    "data.": "the data are built once per job, before the first trial",
    "search.": "the search settings are the study's own",
    "tracking.": "the stores are opened once per job",
    "paths.": "the stores are opened once per job",
    "report.": "the report reads the sweep after it ends",
    "hydra.": "Hydra settings are fixed when the job starts",
}
PER_JOB_KEYS = {
    "seed": "trial k always trains with seed + k",
    "profile": "the profile names the job's sizes",
    "cell.name": "the cell is what the studies compare",
    "trainer.num_threads": "threads are set once per worker process",
    "trainer.accelerator": "the device is chosen once per job",
    "trainer.devices": "the device is chosen once per job",
    "trainer.budget_unit": "the budget is the pruner's resource axis, fixed per study",
    "trainer.max_steps": "the budget is the pruner's resource axis, fixed per study",
    "trainer.max_epochs": "the budget is the pruner's resource axis, fixed per study",
    "trainer.val_check_steps": "the budget is the pruner's resource axis, fixed per study",
}


def _check_tunable(key: str, path: str) -> None:
    """Refuse a search-space path that is read once per job rather than per trial."""
    why = PER_JOB_KEYS.get(path) or next(
        (w for prefix, w in PER_JOB_PREFIXES.items() if path.startswith(prefix)), None)
    if why is not None:
        sweep = "cell=lstm,gru" if path == "cell.name" else f"{path}=<a>,<b>"
        hint = "" if path.startswith(("search.", "hydra.")) else f", e.g. -m {sweep}"
        raise ConfigError(
            f"{key}.path={path!r} is invalid: {path} cannot be searched per trial ({why}; a "
            f"sampled value would be logged but not used); set it per job instead{hint}")


def _validate_param(cfg: DictConfig, key: str, p: DictConfig) -> None:
    check_choice(f"{key}.type", p.type, PARAM_TYPES)
    require(
        OmegaConf.select(cfg, p.path, default="__missing__") != "__missing__",
        f"{key}.path", p.path, "must name an existing config key such as model.hidden_size",
    )
    require(not OmegaConf.is_config(OmegaConf.select(cfg, p.path)), f"{key}.path", p.path,
            "must name a single value (such as model.hidden_size), not a section")
    _check_tunable(key, p.path)
    if p.type == "categorical":
        require(bool(p.choices), f"{key}.choices", p.choices, "needs a non-empty list")
        return
    require(p.low is not None and p.high is not None, key, "low/high", "needs low and high")
    require(p.low <= p.high, f"{key}.low", p.low, f"must be <= {key}.high ({p.high})")
    if p.log:
        require(p.low > 0, f"{key}.low", p.low, "must be > 0 for a log-scaled range")
    # The range itself must respect the bounds of the key it tunes.
    bounds = {
        "model.dropout": (0.0, 1.0, "within [0, 1)"),
        "model.num_layers": (1, None, ">= 1"),
        "model.hidden_size": (1, None, ">= 1"),
        "model.param_budget": (1, None, ">= 1"),
        "optim.lr": (1e-12, None, "> 0"),
    }
    if p.path in bounds:
        lo, hi, text = bounds[p.path]
        ok = p.low >= lo and (hi is None or p.high < hi)
        require(ok, key, f"[{p.low}, {p.high}]", f"range for {p.path} must be {text}")


# -- what the libraries accept ------------------------------------------------------------

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
