"""Structured configs: the typed shape of every config group, checked before any training.

OmegaConf merges the composed YAML into these dataclasses, so an unknown key or a wrong
type fails at once; rnnsweep.validation adds the range checks a type cannot express.

conf/ is the home of every default. A value given here as well ("???" where none is) serves
configs stored before the key existed and objects built in code; tests/test_schema_defaults.py
checks that each equals its YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from rnnsweep.errors import ConfigError

# Sections built by Hydra from `_target_` (rnnsweep.targets): typed where rnnsweep reads a
# key itself, open for the class's own arguments, which are checked against its signature.
OPEN_SECTIONS = ("cell", "optim", "trainer")
# rnnsweep's own trainer keys: read by rnnsweep.training, never passed to the Trainer.
TRAINER_OWN_KEYS = ("budget_unit", "max_steps", "max_epochs", "val_check_steps",
                    "early_stopping_patience", "stop_at", "progress_bar", "num_threads",
                    "memory_probe_batches")


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
    # round up to reeval_max_seeds (rnnsweep.seed_rounds); = reeval_seeds: no rounds.
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


def _match_params(search: DictConfig) -> None:
    """search.match_params=true (Chung et al. 2014): the range that tunes model.hidden_size is
    replaced by `search.budget`, a range of parameter counts; each cell derives its hidden
    size from the sampled budget, so cells are compared at equal parameter counts. Applying
    it to a config that has it already (a study's stored config) changes nothing."""
    if search.match_params and search.study:
        kept = {k: v for k, v in search.space.items() if v.path != "model.hidden_size"}
        search.space = {**kept, "param_budget": search.budget}


def to_structured(cfg: DictConfig) -> DictConfig:
    """Merge a composed config into the schema, its search space as the config means it (fixed
    parameters dropped, the parameter-matched range swapped in); unknown keys and wrong types
    raise ConfigError."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    _drop_fixed_parameters(plain)
    schema = OmegaConf.structured(RootConfig)
    _check_sections(schema, plain, "")
    for section in OPEN_SECTIONS:  # a class's own arguments (validation.check_libraries)
        OmegaConf.set_struct(schema[section], False)
    try:
        merged = OmegaConf.merge(schema, plain)
        OmegaConf.resolve(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    _match_params(merged.search)
    return merged
