"""Structured configs: the typed shape of every config group, checked before any training.

OmegaConf merges the composed YAML into these dataclasses, so an unknown key or a wrong
type fails at once; `validate` adds the range checks a type cannot express.

conf/ is the home of every default. A value given here as well ("???" where none is) serves
configs stored before the key existed and objects built in code; tests/test_schema_defaults.py
checks that each equals its YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from rnnsweep.errors import ConfigError
from rnnsweep.runtime_checks import (
    check_choice,
    check_classes,
    check_search_classes,
    check_trainer,
    require,
)
from rnnsweep.search.repeats import SEED_SPAN, search_repeat

# Trial k trains with seed + k and re-evaluation seeds start at seed + 1,000,000
# (rnnsweep.search.reeval); every one must stay a 32-bit seed for torch/Lightning.
MAX_SEED = 2**32 - 1 - 2_000_000
SIZES = ("small", "large")
PARAM_TYPES = ("int", "float", "categorical")
# Sections built by Hydra from `_target_` (rnnsweep.targets): typed where rnnsweep reads a
# key itself, open for the class's own arguments, which are checked against its signature.
OPEN_SECTIONS = ("cell", "optim", "trainer")


@dataclass
class CellConfig:
    # The label of studies, runs and reports; the class and its own keys (gate biases...)
    # come from conf/cell/<name>.yaml (interface: rnnsweep.cells).
    name: str = "???"
    _target_: str = "???"


@dataclass
class ModelConfig:
    num_layers: int = 1
    hidden_size: int = 64
    dropout: float = 0.0
    # Parameter-matched mode: when set, hidden_size is derived per cell to hit this budget.
    param_budget: int | None = None
    # The keep-the-state gate's bias at initialisation, for every gated cell alike (the cell
    # configs read it: LSTM forget_bias, GRU update_bias); None: PyTorch's default.
    keep_gate_bias: float | None = 1.0
    # The training loss over a per-step task's real steps: "step_mean" (every step alike) or
    # "sequence_sum" (each sequence's summed loss, averaged over sequences). Validation and
    # test stay per-step means.
    train_objective: str = "step_mean"


@dataclass
class OptimConfig:
    # conf/optim/<name>.yaml: a torch.optim class, completed with the parameters.
    _target_: str = "???"
    _partial_: bool = True
    lr: float = "???"  # type: ignore[assignment]  # read by the search space's bounds


@dataclass
class TrainerConfig:
    # Lightning's Trainer: every key below that is not rnnsweep's own (TRAINER_OWN_KEYS)
    # passes through, and any other Trainer argument can be added (+trainer.<arg>=...).
    _target_: str = "lightning.pytorch.Trainer"
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
    # Stop as soon as the objective's validation value reaches this (a paper's "solved").
    stop_at: float | None = None
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
    name: str = "???"
    # false: no study, one model trained with the values given (search=none). Set in
    # conf/search/tpe.yaml and none.yaml; a stored config from before the key was a study's.
    study: bool = True
    # conf/search/sampler/*.yaml and conf/search/pruner/*.yaml: Optuna classes by _target_.
    sampler: dict[str, Any] = field(default_factory=dict)
    pruner: dict[str, Any] = field(default_factory=dict)
    n_trials: int = "???"  # type: ignore[assignment]
    n_startup_trials: int = "???"  # type: ignore[assignment]
    min_sampler_trials: int = "???"  # type: ignore[assignment]
    # Optimiser steps before the pruner may stop a trial (each pruner's file reads it).
    pruner_warmup_steps: int = "???"  # type: ignore[assignment]
    seed: int = 0
    # Which independent search of the condition (rnnsweep.search.repeats); default in
    # conf/search/tpe.yaml; a study's config from before the key reads as 0.
    repeat: int = "???"  # type: ignore[assignment]
    storage: str = "???"
    direction: str = "minimize"
    metric: str = "val_loss"
    max_failure_rate: float = 0.5
    reeval_seeds: int = "???"  # type: ignore[assignment]
    # Each re-evaluation seed of a task that generates its data trains and is tested on a
    # draw of its own (rnnsweep.search.reeval); false: every seed reuses the study's data.
    # Default in conf/search/tpe.yaml; a study's config from before the key reads as false.
    reeval_draws_data: bool = "???"  # type: ignore[assignment]
    # Sequential seeds: while a cell comparison is undecided, add reeval_seed_step seeds per
    # round up to reeval_max_seeds (rnnsweep.search.seed_rounds); = reeval_seeds: no rounds.
    reeval_max_seeds: int = 9
    reeval_seed_step: int = 2
    # Wall-time budget of the seed rounds, from the sweep's start (default in
    # conf/search/tpe.yaml; null: none).
    seed_rounds_minutes: float | None = "???"  # type: ignore[assignment]
    match_params: bool = False
    # Seed a new study with another study's best configurations (rnnsweep.search.warm_start).
    warm_start_from: str | None = None
    warm_start_top_k: int = "???"  # type: ignore[assignment]
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
    rounds: int = 40
    min_rounds: int = 10
    steps_per_round: int = 5
    warmup_steps: int = 3
    # None: the torch threads the sweep's trials trained with (their num_threads param).
    threads: int | None = None
    budget_s: float = 120.0
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
    equivalence_ratio: float = 1.25
    equivalence_margin: float = 0.1
    margin_kind: str = "ratio"  # ratio | relative_to_baseline | absolute
    overfit_margin_fraction: float = 0.25
    trivial_fraction: float = 0.1
    power: float = 0.8
    importance_bootstrap: int = 20
    seed: int = 0
    length_keys: list[str] = field(default_factory=lambda: ["T", "seq_len"])
    article_pair: list[str] = field(default_factory=lambda: ["lstm", "gru"])
    attach: bool = True
    cost_probe: CostProbeConfig = field(default_factory=CostProbeConfig)


@dataclass
class RootConfig:
    cell: CellConfig = field(default_factory=CellConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # conf/scheduler/<name>.yaml (a torch LR scheduler, stepped every optimiser step); null:
    # a constant learning rate.
    scheduler: dict[str, Any] | None = None
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


def _drop_fixed_parameters(plain: DictConfig) -> None:
    """`search.space.<name>: null` (a profile's way to fix a parameter at its model/optim
    value; experiment=controlled) takes it out of the space: YAML merges cannot delete."""
    space = OmegaConf.select(plain, "search.space")
    if isinstance(space, DictConfig):
        with open_dict(space):
            for name in [k for k, v in space.items() if v is None]:
                del space[name]


def to_structured(cfg: DictConfig) -> DictConfig:
    """Merge a composed config into the schema; unknown keys and wrong types raise ConfigError."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    _drop_fixed_parameters(plain)
    schema = OmegaConf.structured(RootConfig)
    _check_sections(schema, plain, "")
    for section in OPEN_SECTIONS:  # a class's own arguments, checked by validate
        OmegaConf.set_struct(schema[section], False)
    try:
        merged = OmegaConf.merge(schema, plain)
        OmegaConf.resolve(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    return merged


def validate(cfg: DictConfig) -> None:
    """Range and consistency checks that the types alone cannot express."""
    check_classes(cfg)
    m = cfg.model
    require(m.num_layers >= 1, "model.num_layers", m.num_layers, "must be an integer >= 1")
    require(m.hidden_size >= 1, "model.hidden_size", m.hidden_size, "must be an integer >= 1")
    require(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be in [0, 1)")
    if m.param_budget is not None:
        require(m.param_budget > 0, "model.param_budget", m.param_budget, "must be > 0")
    check_choice("model.train_objective", m.train_objective, ("step_mean", "sequence_sum"))
    if m.train_objective == "sequence_sum" and cfg.data.get("loss_weighting") == "string":
        raise ConfigError("model.train_objective=sequence_sum and data.loss_weighting=string "
                          "weigh sequences differently: keep one (model.train_objective="
                          "step_mean with the string weighting)")
    require(cfg.optim.lr > 0, "optim.lr", cfg.optim.lr, "must be > 0")
    weight_decay = cfg.optim.get("weight_decay")
    require(weight_decay is None or weight_decay >= 0, "optim.weight_decay", weight_decay,
             "must be >= 0")
    require(0 <= cfg.seed <= MAX_SEED, "seed", cfg.seed,
             f"must be an integer in [0, {MAX_SEED}] (trial k trains with seed + k, "
             "re-evaluation seeds start at seed + 1000000; torch takes 32-bit seeds)")
    t = cfg.trainer
    check_trainer(t)
    check_choice("trainer.budget_unit", t.budget_unit, ("steps", "epochs"))
    require(t.max_epochs >= 1, "trainer.max_epochs", t.max_epochs, "must be >= 1")
    require(t.max_steps >= 1, "trainer.max_steps", t.max_steps, "must be >= 1")
    require(t.val_check_steps >= 1, "trainer.val_check_steps", t.val_check_steps, "must be >= 1")
    if t.budget_unit == "steps":
        require(t.max_steps % t.val_check_steps == 0, "trainer.max_steps", t.max_steps,
                 f"must be a multiple of trainer.val_check_steps ({t.val_check_steps}), "
                 "so the last step is validated")
    require(
        t.gradient_clip_val is None or t.gradient_clip_val > 0,
        "trainer.gradient_clip_val", t.gradient_clip_val, "must be > 0 or null",
    )
    require(
        t.early_stopping_patience >= 1,
        "trainer.early_stopping_patience", t.early_stopping_patience, "must be >= 1",
    )
    require(t.stop_at is None or math.isfinite(t.stop_at), "trainer.stop_at", t.stop_at,
            "must be a finite number or null")
    s = cfg.search
    if s.study:
        require(s.n_trials >= 1, "search.n_trials", s.n_trials, "must be an integer >= 1")
        require(s.n_startup_trials >= 0, "search.n_startup_trials", s.n_startup_trials,
                 "must be an integer >= 0")
        require(s.min_sampler_trials >= 0, "search.min_sampler_trials", s.min_sampler_trials,
                "must be an integer >= 0")
        require(s.pruner_warmup_steps >= 0, "search.pruner_warmup_steps",
                 s.pruner_warmup_steps, "must be an integer >= 0")
        require(0 <= s.seed < 2**32, "search.seed", s.seed,
                 f"must be an integer in [0, {2**32 - 1}] (the sampler's numpy seed)")
        repeat = search_repeat(cfg.search)
        top = (MAX_SEED - cfg.seed) // SEED_SPAN
        require(0 <= repeat <= top, "search.repeat", repeat,
                f"must be an integer in [0, {top}] (repeat r trains with seeds from seed + "
                f"r x {SEED_SPAN}, which must stay <= {MAX_SEED})")
        check_choice("search.on_changed_settings", s.on_changed_settings,
                      ("refuse", "new_study"))
        check_search_classes(s)
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
        for name, p in s.space.items():
            _validate_param(cfg, f"search.space.{name}", p)


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
