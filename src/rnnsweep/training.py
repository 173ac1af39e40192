"""Train and test one model from a resolved config: the body of every trial and single run.

A run's budget counts optimiser steps (trainer.budget_unit=steps, the default): validation,
early stopping and pruning happen every trainer.val_check_steps steps, so small and large
data get the same number of updates. The run's seed drives initialisation, dropout and the
data order (an independent child stream, rnnsweep.data.base.order_seed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import lightning.pytorch as pl
import optuna
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, RichProgressBar
from omegaconf import DictConfig, OmegaConf

from rnnsweep.data.base import TensorDataModule, order_seed
from rnnsweep.lit_module import RecurrentLitModule
from rnnsweep.measure import PeakMemory, rnn_backend
from rnnsweep.model import (
    SequenceModel,
    count_parameters,
    hidden_size_for_budget,
    init_description,
)
from rnnsweep.schema import TRAINER_OWN_KEYS
from rnnsweep.targets import build

# (optimiser step, metrics of that validation)
ValidationHook = Callable[[int, dict[str, float]], None]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the trial fails with this message as its reason."""


@dataclass
class TrainResult:
    best_value: float
    best_step: int
    gap_at_best: float  # val_loss - train_loss_eval (eval mode) at the best validation
    optimizer_steps: int
    budget_steps: int
    seconds_per_step: float
    n_params: int
    hidden_size: int
    test_metrics: dict[str, float]
    # How far the monitored value moved away from its best by the last validation (>= 0).
    val_rise: float = 0.0
    train_loss_eval_at_best: float = math.nan
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    peak_memory_bytes: int = 0
    device: str = "cpu"
    backend: str = ""

    def final_metrics(self, metric: str) -> dict[str, float]:
        """The finite end-of-run figures every run logs, under one set of names."""
        values = {
            f"best_{metric}": self.best_value, "best_step": self.best_step,
            "gap_at_best": self.gap_at_best, "train_loss_eval_at_best":
            self.train_loss_eval_at_best, "val_rise": self.val_rise,
            "optimizer_steps": self.optimizer_steps, "seconds_per_step": self.seconds_per_step,
            "n_params": self.n_params, "hidden_size_used": self.hidden_size,
            "peak_memory_bytes": self.peak_memory_bytes, **self.test_metrics,
        }
        return {k: float(v) for k, v in values.items() if math.isfinite(float(v))}


class ValidationRecorder(Callback):
    """Reads each validation's metrics once, keeps the best weights in memory, rejects NaN/inf.

    In-memory best weights replace a ModelCheckpoint: writing a file per improvement would
    dominate the cost of small trials.
    """

    def __init__(self, monitor: str, mode: str, on_validation: ValidationHook | None = None):
        self.monitor, self.mode, self.on_validation = monitor, mode, on_validation
        self.history: list[dict[str, float]] = []
        self.best_value = math.inf if mode == "min" else -math.inf
        self.best_step = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self._since = 0.0
        self.train_seconds = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Training time only: validation and bookkeeping are not a training step's cost.
        self.train_seconds += time.perf_counter() - self._since

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        step = trainer.global_step
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        metrics["seconds_per_step"] = self.train_seconds / step if step else math.nan
        self.history.append({"step": step, **metrics})
        if self.on_validation is not None:
            self.on_validation(step, metrics)
        for key in ("train_loss", self.monitor):
            if key in metrics and not math.isfinite(metrics[key]):
                raise NonFiniteLossError(f"{key} is {metrics[key]} at step {step}")
        value = metrics[self.monitor]
        better = value < self.best_value if self.mode == "min" else value > self.best_value
        if better:
            self.best_value, self.best_step = value, step
            self.best_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self._since = time.perf_counter()


class StepPruning(Callback):
    """Reports the monitored value to Optuna at each validation, against the optimiser step.

    Written here because optuna-integration's callback reports against the epoch: with a
    step budget several validations fall in one epoch, and small and large data would report
    at different points of training.
    """

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if not math.isfinite(value):
            return  # the recorder fails the trial
        step = trainer.global_step
        self.trial.report(value, step=step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")


class StepProgressBar(RichProgressBar):
    """Lightning's bar (rich) over the run's optimiser steps, for a step budget.

    With max_steps and max_epochs=-1 the default bar counts batches of the current epoch
    under "Epoch 80/-2"; this one shows `Steps  640/1000` over the whole run."""

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{'Steps':{len(self.validation_description)}}"

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # One task for the whole run: the default resets it (to 0) at every epoch.
        if self.is_disabled or self.progress is None:
            return
        if self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self.refresh()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: object, batch: object, batch_idx: int) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()


@dataclass(frozen=True)
class ModelNodes:
    """The nodes a network and its optimisation are built from: `cell`, `model`, `optim`
    and `scheduler` (None: a constant learning rate)."""

    cell: DictConfig
    model: DictConfig
    optim: DictConfig
    scheduler: DictConfig | None = None


@dataclass(frozen=True)
class TrainSetup:
    """Everything train_model reads, picked from a job's config once by the caller
    (rnnsweep.job.train_setup; the config is the glue): the model's nodes, the `trainer`
    node, the monitored metric and its direction (search.metric / search.direction), whether
    a batch progress bar shows, and the torch threads."""

    nodes: ModelNodes
    trainer: DictConfig
    metric: str
    direction: str
    progress_bar: bool
    num_threads: int

    def with_values(self, values: dict[str, Any]) -> TrainSetup:
        """A copy with each {config path: value} written into its node: a trial's sampled
        values (model.hidden_size, optim.lr; the schema refuses paths outside these nodes)."""
        n = self.nodes
        parts = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(
            {"cell": n.cell, "model": n.model, "optim": n.optim, "scheduler": n.scheduler,
             "trainer": self.trainer}), resolve=True))
        for path, value in values.items():
            OmegaConf.update(parts, path, value, merge=False)
        return replace(self, trainer=parts.trainer,
                       nodes=ModelNodes(parts.cell, parts.model, parts.optim, parts.scheduler))


def progress_callbacks(setup: TrainSetup) -> list[Callback]:
    """The step bar when the batch progress is shown and the budget counts steps; else
    Lightning's own bar (its epochs are then the budget's unit)."""
    if setup.progress_bar and setup.trainer.budget_unit == "steps":
        return [StepProgressBar()]
    return []


def progress(optimizer_steps: int, best_step: int) -> dict[str, float]:
    """What a run that ended early (pruned, failed) spent: the optimiser steps it took and,
    when a validation finished, the step of its best one."""
    spent = {"optimizer_steps": float(optimizer_steps)}
    if best_step >= 0:
        spent["best_step"] = float(best_step)
    return spent


def resolve_hidden_size(nodes: ModelNodes, datamodule: TensorDataModule) -> int:
    """model.hidden_size, or the size that meets model.param_budget for this cell."""
    model = nodes.model
    if model.param_budget is None:
        return int(model.hidden_size)
    return hidden_size_for_budget(
        nodes.cell, datamodule.spec, int(model.param_budget), int(model.num_layers)
    )


def budget_steps(trainer: DictConfig, datamodule: TensorDataModule) -> int:
    """The optimiser steps a run may take: the `trainer` node's max_steps, or epochs x
    batches."""
    if trainer.budget_unit == "steps":
        return int(trainer.max_steps)
    return int(trainer.max_epochs) * datamodule.batches_per_epoch()


def run_params(setup: TrainSetup, datamodule: TensorDataModule) -> dict[str, str | int]:
    """What every run records beside its sampled values: budget, threads, initialisation."""
    t = setup.trainer
    return {
        "budget_steps": budget_steps(t, datamodule),
        "budget_unit": t.budget_unit,
        "val_check_steps": (t.val_check_steps if t.budget_unit == "steps"
                            else datamodule.batches_per_epoch()),
        "num_threads": setup.num_threads,
        "init": init_description(setup.nodes.cell),
    }


def build_module(nodes: ModelNodes, datamodule: TensorDataModule) -> RecurrentLitModule:
    """The cell from `cell`, the optimiser from `optim`, the schedule from `scheduler`."""
    model = nodes.model
    net = SequenceModel(nodes.cell, datamodule.spec, resolve_hidden_size(nodes, datamodule),
                        int(model.num_layers), float(model.dropout))
    scheduler = build(nodes.scheduler) if nodes.scheduler is not None else None
    return RecurrentLitModule(net, optimizer=build(nodes.optim), scheduler=scheduler,
                              train_objective=model.train_objective)


def _budget_kwargs(t: DictConfig) -> dict:
    """Lightning's budget and validation cadence from the `trainer` node."""
    if t.budget_unit == "steps":
        # Validation every N optimiser steps counted across epoch boundaries.
        return {"max_steps": int(t.max_steps), "max_epochs": -1,
                "val_check_interval": int(t.val_check_steps), "check_val_every_n_epoch": None}
    return {"max_epochs": int(t.max_epochs)}


def train_model(
    setup: TrainSetup,
    datamodule: TensorDataModule,
    seed: int,
    callbacks: Sequence[Callback] = (),
    on_validation: ValidationHook | None = None,
    trial: optuna.Trial | None = None,
) -> TrainResult:
    """Fit with early stopping, restore the best validation's weights, and test them."""
    pl.seed_everything(seed, workers=False, verbose=False)
    torch.set_num_threads(setup.num_threads)
    datamodule.setup()
    datamodule.order_seed = order_seed(seed)
    module = build_module(setup.nodes, datamodule)
    t, metric = setup.trainer, setup.metric
    memory = PeakMemory(int(t.memory_probe_batches))

    def record(step: int, metrics: dict[str, float]) -> None:
        metrics["peak_memory_bytes"] = float(memory.current())
        if on_validation is not None:
            on_validation(step, metrics)

    mode = "min" if setup.direction == "minimize" else "max"
    recorder = ValidationRecorder(metric, mode, record)
    # stop_at: Lightning's stopping_threshold, checked at every validation like the patience.
    stopper = EarlyStopping(monitor=metric, mode=mode, patience=t.early_stopping_patience,
                            stopping_threshold=t.stop_at)
    extra = [StepPruning(trial, metric)] if trial is not None else []
    # Every `trainer` key but rnnsweep's own reaches Lightning's Trainer as it is.
    trainer = build(
        t,
        skip=TRAINER_OWN_KEYS,
        **_budget_kwargs(t),
        callbacks=[memory, recorder, stopper, *extra, *progress_callbacks(setup), *callbacks],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=setup.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    try:
        trainer.fit(module, datamodule=datamodule)
    except Exception as err:  # pruned or failed: what it spent still goes on its run
        err.progress = progress(trainer.global_step, recorder.best_step)  # type: ignore[attr-defined]
        raise
    if recorder.best_state is None:
        raise NonFiniteLossError("no validation finished")
    module.load_state_dict(recorder.best_state)
    example = torch.zeros(2, 3, datamodule.spec.input_size, device=module.device)
    tested = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    # A task may add metrics that need the trained network itself (e.g. anbn's count limit).
    extra_metrics = getattr(datamodule, "extra_test_metrics", None)
    if extra_metrics is not None:
        tested.update(extra_metrics(module.net))
    best = next(h for h in recorder.history if h["step"] == recorder.best_step)
    last = recorder.history[-1][metric]
    steps = trainer.global_step
    return TrainResult(
        best_value=recorder.best_value,
        best_step=recorder.best_step,
        gap_at_best=best.get("gap", math.nan),
        optimizer_steps=steps,
        budget_steps=budget_steps(t, datamodule),
        seconds_per_step=recorder.train_seconds / steps if steps else math.nan,
        n_params=count_parameters(module.net),
        hidden_size=module.net.rnn.hidden_size,
        test_metrics={k: float(v) for k, v in tested.items()},
        val_rise=abs(last - recorder.best_value),
        train_loss_eval_at_best=best.get("train_loss_eval", math.nan),
        history=recorder.history,
        best_state=recorder.best_state,
        peak_memory_bytes=memory.current(),
        device=module.device.type,
        backend=rnn_backend(module.net, example),
    )
