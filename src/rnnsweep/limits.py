"""Preflight checks that need the task: the metric a study optimises must be one the task
logs, and the largest model the job can build must fit in this machine's memory.

Both run before anything is created (rnnsweep.job.checked_parts, in the preflight's second
pass) and again when a job starts (the Job calls it too: a launcher's worker skips the
preflight).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from rnnsweep.cells import CellSpec, cell_name, gate_blocks
from rnnsweep.errors import ConfigError
from rnnsweep.lit_module import validation_metrics
from rnnsweep.model import hidden_size_for_budget, total_parameters
from rnnsweep.targets import class_name

if TYPE_CHECKING:
    from rnnsweep.training import ModelNodes

BYTES_PER_VALUE = 4  # float32
# Optimiser state per parameter, by class name: Adam's and AdamW's two moments, plain SGD
# none; an optimiser not listed is assumed to keep two.
OPTIMISER_STATES = {"adam": 2, "adamw": 2, "sgd": 0}


def check_metric(search: DictConfig, task: str, spec: Any) -> None:
    """search.metric must be a validation value this task logs, optimised the right way."""
    allowed = validation_metrics(spec)
    metric, direction = search.metric, search.direction
    if metric not in allowed:
        raise ConfigError(f"search.metric={metric!r} is invalid: the {task} task logs "
                          f"{', '.join(allowed)}")
    wanted = "maximize" if metric.endswith("_acc") else "minimize"
    if direction != wanted:
        raise ConfigError(f"search.direction={direction!r} is invalid for search.metric="
                          f"{metric}: an {'accuracy' if wanted == 'maximize' else 'error'} "
                          f"must be {wanted}d, set search.direction={wanted}")


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 when the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def _largest(search: DictConfig, path: str, value: Any) -> tuple[Any, str]:
    """The largest value `path` takes in the job: its space's top when searched."""
    for name, p in search.space.items() if search.study else ():
        if p.path == path:
            if p.type == "categorical":
                numbers = [c for c in p.choices if isinstance(c, (int, float))]
                return (max(numbers), f"search.space.{name}.choices") if numbers else (value, path)
            top = int(p.high) if p.type == "int" else p.high
            return top, f"search.space.{name}.high"
    return value, path


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def estimate_bytes(cell: CellSpec, spec: Any, hidden: int, layers: int, optimiser: str,
                   batch: int, seq_len: int | None) -> int:
    """Float32 bytes of training: parameters with their gradients and optimiser state, plus
    the activations kept for backward (batch x steps x hidden x layers x (gates + 2))."""
    params = total_parameters(cell, spec, hidden, layers)
    weights = params * (2 + OPTIMISER_STATES.get(optimiser, 2))
    acts = batch * (seq_len or 1) * hidden * layers * (gate_blocks(cell) + 2)
    return (weights + acts) * BYTES_PER_VALUE


def check_memory(search: DictConfig, nodes: ModelNodes, batch: int, datamodule: Any,
                 available: int | None = None) -> None:
    """The largest model of the job (the top of the space when searched) must fit in memory."""
    available = machine_memory() if available is None else available
    if available <= 0:
        return
    spec, model = datamodule.spec, nodes.model
    layers, _ = _largest(search, "model.num_layers", model.num_layers)
    if model.param_budget is not None or (search.match_params and search.study):
        budget, key = _largest(search, "model.param_budget", model.param_budget)
        hidden = hidden_size_for_budget(nodes.cell, spec, int(budget), int(layers))
        shown = f"{key}={budget}"
    else:
        hidden, key = _largest(search, "model.hidden_size", model.hidden_size)
        shown = f"{key}={hidden}"
    seq_len = datamodule.max_train_len()
    optimiser = class_name(nodes.optim).lower()  # torch.optim.Adam: adam
    need = estimate_bytes(nodes.cell, spec, int(hidden), int(layers), optimiser, batch,
                          seq_len)
    if need > available:
        steps = f" x {seq_len} steps" if seq_len else ""
        raise ConfigError(
            f"{shown} is invalid: {int(layers)} layer(s) of {cell_name(nodes.cell)} at hidden size "
            f"{int(hidden)} need about {_size(need)} to train (float32 weights, gradients, "
            f"{optimiser} state and activations for batch {batch}{steps}), more than "
            f"this machine's {_size(available)} of memory")


def check_job(search: DictConfig, nodes: ModelNodes, data: DictConfig, datamodule: Any) -> None:
    """Every task-dependent check of a typed job: its `search` and `data` nodes and the
    model's nodes."""
    check_metric(search, data.task, datamodule.spec)
    check_memory(search, nodes, int(data.batch_size), datamodule)
