"""Train and test one model from a resolved config: the body of every trial and single run."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from omegaconf import DictConfig

from rnnsweep.data.base import TensorDataModule
from rnnsweep.lit_module import RecurrentLitModule
from rnnsweep.measure import PeakMemory, rnn_backend
from rnnsweep.model import count_parameters, hidden_size_for_budget
from rnnsweep.threads import resolve_num_threads

EpochHook = Callable[[int, dict[str, float]], None]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the trial fails with this message as its reason."""


@dataclass
class TrainResult:
    best_value: float
    best_epoch: int
    gap_at_best: float
    epochs_run: int
    seconds_per_epoch: float
    n_params: int
    hidden_size: int
    test_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    peak_memory_bytes: int = 0
    device: str = "cpu"
    backend: str = ""


class EpochRecorder(Callback):
    """Reads each epoch's metrics once, keeps the best weights in memory, rejects NaN/inf.

    In-memory best weights replace a ModelCheckpoint: writing a file per improvement would
    dominate the cost of small trials.
    """

    def __init__(self, monitor: str, mode: str, on_epoch: EpochHook | None = None) -> None:
        self.monitor, self.mode, self.on_epoch = monitor, mode, on_epoch
        self.history: list[dict[str, float]] = []
        self.best_value = math.inf if mode == "min" else -math.inf
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self._epoch_start = 0.0
        self.epoch_seconds: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        seconds = time.perf_counter() - self._epoch_start
        self.epoch_seconds.append(seconds)
        epoch = trainer.current_epoch
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        metrics["epoch_seconds"] = seconds
        self.history.append({"epoch": epoch, **metrics})
        if self.on_epoch is not None:
            self.on_epoch(epoch, metrics)
        for key in ("train_loss", self.monitor):
            if key in metrics and not math.isfinite(metrics[key]):
                raise NonFiniteLossError(f"{key} is {metrics[key]} at epoch {epoch}")
        value = metrics[self.monitor]
        better = value < self.best_value if self.mode == "min" else value > self.best_value
        if better:
            self.best_value, self.best_epoch = value, epoch
            self.best_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def resolve_hidden_size(cfg: DictConfig, datamodule: TensorDataModule) -> int:
    if cfg.model.param_budget is None:
        return int(cfg.model.hidden_size)
    return hidden_size_for_budget(
        cfg.cell.name, datamodule.spec, int(cfg.model.param_budget), int(cfg.model.num_layers)
    )


def show_batch_progress(cfg: DictConfig) -> bool:
    """trainer.progress_bar, where null means: only for a single run (search=none)."""
    if cfg.trainer.progress_bar is None:
        return cfg.search.name == "none"
    return bool(cfg.trainer.progress_bar)


def build_module(cfg: DictConfig, datamodule: TensorDataModule) -> RecurrentLitModule:
    return RecurrentLitModule(
        cell=cfg.cell.name,
        spec=datamodule.spec,
        hidden_size=resolve_hidden_size(cfg, datamodule),
        num_layers=int(cfg.model.num_layers),
        dropout=float(cfg.model.dropout),
        forget_bias=float(cfg.cell.forget_bias),
        optim_name=cfg.optim.name,
        lr=float(cfg.optim.lr),
        weight_decay=float(cfg.optim.weight_decay),
    )


def train_model(
    cfg: DictConfig,
    datamodule: TensorDataModule,
    seed: int,
    callbacks: Sequence[Callback] = (),
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Fit with early stopping, restore the best epoch's weights, and test them."""
    pl.seed_everything(seed, workers=False, verbose=False)
    torch.set_num_threads(resolve_num_threads(cfg))
    module = build_module(cfg, datamodule)
    memory = PeakMemory(int(cfg.trainer.memory_probe_batches))

    def record_epoch(epoch: int, metrics: dict[str, float]) -> None:
        metrics["peak_memory_bytes"] = float(memory.current())
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    mode = "min" if cfg.search.direction == "minimize" else "max"
    recorder = EpochRecorder(cfg.search.metric, mode, record_epoch)
    stopper = EarlyStopping(
        monitor=cfg.search.metric, mode=mode, patience=cfg.trainer.early_stopping_patience
    )
    trainer = pl.Trainer(
        max_epochs=cfg.trainer.max_epochs,
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        precision=cfg.trainer.precision,
        deterministic=cfg.trainer.deterministic,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        callbacks=[memory, recorder, stopper, *callbacks],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=show_batch_progress(cfg),
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)
    if recorder.best_state is None:
        raise NonFiniteLossError("no validation epoch finished")
    module.load_state_dict(recorder.best_state)
    example = torch.zeros(2, 3, datamodule.spec.input_size, device=module.device)
    tested = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    # A task may add metrics that need the trained network itself (e.g. anbn's count limit).
    extra = getattr(datamodule, "extra_test_metrics", None)
    if extra is not None:
        tested.update(extra(module.net))
    best = recorder.history[[h["epoch"] for h in recorder.history].index(recorder.best_epoch)]
    return TrainResult(
        best_value=recorder.best_value,
        best_epoch=recorder.best_epoch,
        gap_at_best=best.get("gap", float("nan")),
        epochs_run=len(recorder.history),
        seconds_per_epoch=sum(recorder.epoch_seconds) / len(recorder.epoch_seconds),
        n_params=count_parameters(module.net),
        hidden_size=module.net.rnn.hidden_size,
        test_metrics={k: float(v) for k, v in tested.items()},
        history=recorder.history,
        best_state=recorder.best_state,
        peak_memory_bytes=memory.current(),
        device=module.device.type,
        backend=rnn_backend(module.net, example),
    )
