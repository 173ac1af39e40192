"""Structured configs: the typed shape of every config group, checked before any training.

OmegaConf merges the composed YAML into these dataclasses, so an unknown key or a wrong
type fails at once; `validate` adds the range checks a type cannot express.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnsweep.errors import ConfigError

CELLS = ("rnn", "lstm", "gru")
# Trial k trains with seed + k and re-evaluation seeds start at seed + 1,000,000
# (rnnsweep.search.reeval); every one must stay a 32-bit seed for torch/Lightning.
MAX_SEED = 2**32 - 1 - 2_000_000
SIZES = ("small", "large")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")
PARAM_TYPES = ("int", "float", "categorical")
# The gate-bias keys each cell accepts, and the gate block each sets: LSTM gates are
# (i, f, g, o), GRU gates (r, z, n); block 1 is the forget / update gate in both.
BIAS_KEYS: dict[str, dict[str, int]] = {"lstm": {"forget_bias": 1}, "gru": {"update_bias": 1},
                                        "rnn": {}}


@dataclass
class CellConfig:
    name: str = "lstm"
    # Gate-bias initialisation; each cell accepts only its own key (model.BIAS_KEYS) and
    # sets its default in conf/cell/<name>.yaml. None: PyTorch's default initialisation.
    forget_bias: float | None = None
    update_bias: float | None = None


@dataclass
class ModelConfig:
    num_layers: int = 1
    hidden_size: int = 64
    dropout: float = 0.0
    # Parameter-matched mode: when set, hidden_size is derived per cell to hit this budget.
    param_budget: int | None = None


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0


@dataclass
class TrainerConfig:
    # The budget of a run: optimiser steps (equal for every data size) or epochs.
    budget_unit: str = "steps"
    max_steps: int = 1200
    max_epochs: int = 20
    # Validation cadence in optimiser steps (budget_unit=steps; with epochs: every epoch).
    val_check_steps: int = 60
    accelerator: str = "auto"
    devices: int = 1
    precision: str = "32-true"
    deterministic: bool = True
    gradient_clip_val: float | None = 1.0
    # Validations without improvement before stopping: patience x val_check_steps steps.
    early_stopping_patience: int = 5
    # Lightning's per-batch bar. null: shown for a single run (search=none), hidden in studies.
    progress_bar: bool | None = None
    num_threads: int | None = None
    # CPU peak memory: saved-for-backward bytes of the first N training steps (rnnsweep.measure).
    memory_probe_batches: int = 3


@dataclass
class ParamSpace:
    path: str = "???"
    type: str = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None


@dataclass
class SearchConfig:
    name: str = "tpe"
    sampler: str = "tpe"
    pruner: str = "median"
    n_trials: int = 10
    n_startup_trials: int = 5
    # Optimiser steps before the pruner may stop a trial.
    pruner_warmup_steps: int = 180
    seed: int = 0
    storage: str = "???"
    direction: str = "minimize"
    metric: str = "val_loss"
    max_failure_rate: float = 0.5
    reeval_seeds: int = 3
    # Sequential seeds: while a cell comparison is undecided, add reeval_seed_step seeds per
    # round up to reeval_max_seeds (rnnsweep.search.seed_rounds); = reeval_seeds: no rounds.
    reeval_max_seeds: int = 9
    reeval_seed_step: int = 2
    match_params: bool = False
    heartbeat_interval: int = 10
    heartbeat_grace_period: int = 30
    retry_failed_trials: int = 1
    # A rerun whose fixed settings (rnnsweep.search.settings) differ from its study's:
    # refuse (one line naming the keys), or new_study (a study named with the settings' hash).
    on_changed_settings: str = "refuse"
    space: dict[str, ParamSpace] = field(default_factory=dict)
    # Parameter-matched mode: this range of model.param_budget replaces the hidden-size range.
    budget: ParamSpace = field(default_factory=ParamSpace)


@dataclass
class TrackingConfig:
    uri: str = "???"
    artifact_root: str = "???"
    experiment: str | None = None
    sweep_id: str = "single"
    # Register each study's best model in the Model Registry (name: the study's name).
    register_best: bool = False


@dataclass
class PathsConfig:
    root: str = "???"
    output_dir: str = "???"


@dataclass
class CostProbeConfig:
    """The report's cost probe (rnnsweep.cost): both cells timed interleaved at the sweep's
    best sizes; rounds are cut to fit `budget_s` CPU seconds, never below `min_rounds`."""

    enabled: bool = True
    max_sizes: int = 3
    rounds: int = 12
    min_rounds: int = 5
    steps_per_round: int = 3
    warmup_steps: int = 3
    threads: int = 1
    budget_s: float = 20.0
    device: str = "auto"


@dataclass
class ReportConfig:
    sweep_id: str | None = None
    sweep_stamp: str | None = None
    experiment: str | None = None
    out_dir: str = "???"
    test_metric: str = "test_loss"
    test_metric_direction: str | None = None  # minimize | maximize; None: from the name
    alpha: float = 0.05
    effect_scale: str = "auto"  # auto | log | raw
    df_rule: str = "hsu"  # hsu | welch
    equivalence_margin: float = 0.1
    margin_kind: str = "relative_to_baseline"  # relative_to_baseline | absolute
    trivial_fraction: float = 0.1
    power: float = 0.8
    importance_bootstrap: int = 20
    seed: int = 0
    length_keys: list[str] = field(default_factory=lambda: ["T", "seq_len"])
    attach: bool = True
    cost_probe: CostProbeConfig = field(default_factory=CostProbeConfig)


@dataclass
class RootConfig:
    cell: CellConfig = field(default_factory=CellConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    # Task-specific keys; checked against the task's own dataclass (rnnsweep.data.registry).
    data: dict[str, Any] = field(default_factory=dict)
    profile: str = "default"
    seed: int = 0


def _one_line(err: OmegaConfBaseException) -> str:
    msg = str(err).splitlines()[0]
    key = getattr(err, "full_key", None)
    return f"{key}: {msg}" if key and key not in msg else msg


def _element_type(schema: Any) -> Any:
    """The dataclass of a dict-of-sections node (search.space), else None."""
    element = getattr(getattr(schema, "_metadata", None), "element_type", None)
    return element if hasattr(element, "__dataclass_fields__") else None


def _check_sections(schema: Any, value: Any, key: str) -> None:
    """A section (optim, model, search.space.lr ...) given a plain value, as in `optim=sgd`:
    one line saying it is a section, with its keys (OmegaConf's own message is a merge
    error about dataclass subclasses)."""
    if not OmegaConf.is_dict(schema) or not OmegaConf.is_dict(value):
        return
    element = _element_type(schema)
    for k in (str(k) for k in value.keys()):
        if OmegaConf.is_interpolation(value, k):
            continue
        if element is not None:  # an entry of search.space
            sub = OmegaConf.structured(element)
        elif k in schema and not OmegaConf.is_missing(schema, k):
            sub = schema[k]
        else:
            continue
        if not OmegaConf.is_dict(sub) or OmegaConf.is_missing(value, k):
            continue
        child, name = value[k], f"{key}.{k}" if key else k
        if child is None or OmegaConf.is_dict(child):
            _check_sections(sub, child, name)
            continue
        fields = _element_type(sub)
        if fields is not None:
            what = (f"a section of named entries, each with keys "
                    f"({', '.join(fields.__dataclass_fields__)}); e.g. {name}.<name>.path=...")
        else:
            keys = [str(x) for x in sub.keys()]
            what = f"a section of keys ({', '.join(keys)}), not a value"
            what += (f"; did you mean {name}.name={child}?" if "name" in keys else
                     f"; set its keys, e.g. {name}.{keys[0]}=..." if keys else "")
        raise ConfigError(f"{name}={child} is invalid: {name} is {what}")


def to_structured(cfg: DictConfig) -> DictConfig:
    """Merge a composed config into the schema; unknown keys and wrong types raise ConfigError."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    _check_sections(OmegaConf.structured(RootConfig), plain, "")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RootConfig), plain)
        OmegaConf.resolve(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    return merged


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    _require(value in allowed, key, value, "allowed: " + ", ".join(allowed))


def validate(cfg: DictConfig) -> None:
    """Range and consistency checks that the types alone cannot express."""
    _check_choice("cell.name", cfg.cell.name, CELLS)
    m = cfg.model
    _require(m.num_layers >= 1, "model.num_layers", m.num_layers, "must be an integer >= 1")
    _require(m.hidden_size >= 1, "model.hidden_size", m.hidden_size, "must be an integer >= 1")
    _require(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be in [0, 1)")
    if m.param_budget is not None:
        _require(m.param_budget > 0, "model.param_budget", m.param_budget, "must be > 0")
    _require(cfg.optim.lr > 0, "optim.lr", cfg.optim.lr, "must be > 0")
    _check_choice("optim.name", cfg.optim.name, ("adam", "adamw", "sgd"))
    _require(cfg.optim.weight_decay >= 0, "optim.weight_decay", cfg.optim.weight_decay,
             "must be >= 0")
    _require(0 <= cfg.seed <= MAX_SEED, "seed", cfg.seed,
             f"must be an integer in [0, {MAX_SEED}] (trial k trains with seed + k, "
             "re-evaluation seeds start at seed + 1000000; torch takes 32-bit seeds)")
    t = cfg.trainer
    _check_trainer(t)
    _check_choice("trainer.budget_unit", t.budget_unit, ("steps", "epochs"))
    _require(t.max_epochs >= 1, "trainer.max_epochs", t.max_epochs, "must be >= 1")
    _require(t.max_steps >= 1, "trainer.max_steps", t.max_steps, "must be >= 1")
    _require(t.val_check_steps >= 1, "trainer.val_check_steps", t.val_check_steps, "must be >= 1")
    if t.budget_unit == "steps":
        _require(t.max_steps % t.val_check_steps == 0, "trainer.max_steps", t.max_steps,
                 f"must be a multiple of trainer.val_check_steps ({t.val_check_steps}), "
                 "so the last step is validated")
    _check_cell_init(cfg.cell)
    _require(
        t.gradient_clip_val is None or t.gradient_clip_val > 0,
        "trainer.gradient_clip_val", t.gradient_clip_val, "must be > 0 or null",
    )
    _require(
        t.early_stopping_patience >= 1,
        "trainer.early_stopping_patience", t.early_stopping_patience, "must be >= 1",
    )
    s = cfg.search
    if s.name != "none":
        _require(s.n_trials >= 1, "search.n_trials", s.n_trials, "must be an integer >= 1")
        _require(s.n_startup_trials >= 0, "search.n_startup_trials", s.n_startup_trials,
                 "must be an integer >= 0")
        _require(s.pruner_warmup_steps >= 0, "search.pruner_warmup_steps",
                 s.pruner_warmup_steps, "must be an integer >= 0")
        _require(0 <= s.seed < 2**32, "search.seed", s.seed,
                 f"must be an integer in [0, {2**32 - 1}] (the sampler's numpy seed)")
        _check_choice("search.on_changed_settings", s.on_changed_settings,
                      ("refuse", "new_study"))
        _check_choice("search.sampler", s.sampler, SAMPLERS)
        _check_choice("search.pruner", s.pruner, PRUNERS)
        _check_choice("search.direction", s.direction, ("minimize", "maximize"))
        _require(
            0.0 <= s.max_failure_rate <= 1.0,
            "search.max_failure_rate", s.max_failure_rate, "must be in [0, 1]",
        )
        _require(s.reeval_seeds >= 0, "search.reeval_seeds", s.reeval_seeds, "must be >= 0")
        _require(s.reeval_max_seeds >= s.reeval_seeds, "search.reeval_max_seeds",
                 s.reeval_max_seeds, f"must be >= search.reeval_seeds ({s.reeval_seeds})")
        _require(s.reeval_seed_step >= 1, "search.reeval_seed_step", s.reeval_seed_step,
                 "must be >= 1")
        _require(s.heartbeat_interval >= 1, "search.heartbeat_interval", s.heartbeat_interval,
                 "must be an integer >= 1 (seconds)")
        _require(s.heartbeat_grace_period > s.heartbeat_interval, "search.heartbeat_grace_period",
                 s.heartbeat_grace_period, "must exceed search.heartbeat_interval")
        _require(s.retry_failed_trials >= 0, "search.retry_failed_trials",
                 s.retry_failed_trials, "must be >= 0")
        _require(len(s.space) > 0, "search.space", "{}", "needs at least one parameter")
        for name, p in s.space.items():
            _validate_param(cfg, f"search.space.{name}", p)


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


def _check_trainer(t: DictConfig) -> None:
    """The trainer values that reach Lightning and torch, against what they accept here."""
    _require(t.num_threads is None or t.num_threads >= 1, "trainer.num_threads", t.num_threads,
             "must be an integer >= 1, or null (the cores divided among local workers)")
    _require(t.devices >= 1, "trainer.devices", t.devices, "must be an integer >= 1")
    _require(t.memory_probe_batches >= 0, "trainer.memory_probe_batches",
             t.memory_probe_batches, "must be an integer >= 0")
    precisions = lightning_precisions()
    _require(t.precision in precisions, "trainer.precision", t.precision,
             "allowed (Lightning): " + ", ".join(precisions))
    accelerators = lightning_accelerators()
    _check_choice("trainer.accelerator", t.accelerator, tuple(sorted(accelerators)))
    here = ", ".join(sorted(n for n, ok in accelerators.items() if ok))
    _require(accelerators[t.accelerator], "trainer.accelerator", t.accelerator,
             f"this machine has none; available here: {here}")
    gpu = t.accelerator in ("cuda", "gpu") or (t.accelerator == "auto" and accelerators["gpu"])
    if t.precision in ("16-mixed", "16") and not gpu:
        raise ConfigError(f"trainer.precision={t.precision!r} is invalid on the CPU: float16 "
                          "mixed precision needs a GPU; use bf16-mixed or 32-true")
    if t.accelerator in ("cuda", "gpu") and accelerators.get("cuda"):
        import torch

        count = torch.cuda.device_count()
        _require(t.devices <= count, "trainer.devices", t.devices,
                 f"this machine has {count} CUDA device(s)")


def _check_cell_init(cell: DictConfig) -> None:
    """A gate-bias key the chosen cell cannot use is refused, never silently ignored."""
    allowed = BIAS_KEYS.get(cell.name, {})
    for key in ("forget_bias", "update_bias"):
        if cell[key] is not None and key not in allowed:
            raise ConfigError(f"cell.{key}={cell[key]} is invalid for cell {cell.name}: "
                              f"allowed: {', '.join(allowed) or 'no gate-bias key'}")


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
    _check_choice(f"{key}.type", p.type, PARAM_TYPES)
    _require(
        OmegaConf.select(cfg, p.path, default="__missing__") != "__missing__",
        f"{key}.path", p.path, "must name an existing config key such as model.hidden_size",
    )
    _require(not OmegaConf.is_config(OmegaConf.select(cfg, p.path)), f"{key}.path", p.path,
             "must name a single value (such as model.hidden_size), not a section")
    _check_tunable(key, p.path)
    if p.type == "categorical":
        _require(bool(p.choices), f"{key}.choices", p.choices, "needs a non-empty list")
        return
    _require(p.low is not None and p.high is not None, key, "low/high", "needs low and high")
    _require(p.low <= p.high, f"{key}.low", p.low, f"must be <= {key}.high ({p.high})")
    if p.log:
        _require(p.low > 0, f"{key}.low", p.low, "must be > 0 for a log-scaled range")
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
        _require(ok, key, f"[{p.low}, {p.high}]", f"range for {p.path} must be {text}")
