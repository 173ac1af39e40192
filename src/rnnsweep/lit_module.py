"""One LightningModule for every cell and task: loss, metrics and logging per validation."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import lightning.pytorch as pl
import torch
from torchmetrics import MeanMetric

from rnnsweep.data.spec import TaskSpec
from rnnsweep.losses import loss_kind, sequence_weights, step_mask
from rnnsweep.model import SequenceModel

# Built by Hydra from `optim` / `scheduler` (`_partial_: true`): called with the parameters
# (or the optimiser) they complete the object, as in lightning-hydra-template.
OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def validation_metrics(spec: TaskSpec) -> tuple[str, ...]:
    """The validation values RecurrentLitModule logs for a task (what search.metric may
    name); on_validation_epoch_end logs these and the training-side train_loss,
    train_loss_eval and gap."""
    return loss_kind(spec.loss).metric_names("val")


def trim_padding(batch: tuple[torch.Tensor, ...],
                 spec: TaskSpec) -> tuple[torch.Tensor, ...]:
    """A variable-length batch cut to its longest real sequence: the steps after it are
    padding in every row, so dropping them changes nothing the loss reads and saves their
    compute (the part of the padding that packing used to skip)."""
    x, y, lengths = batch
    if not spec.variable_length:
        return x, y, lengths
    longest = int(lengths.max())
    if longest == x.shape[1]:
        return x, y, lengths
    return x[:, :longest], (y[:, :longest] if spec.per_step else y), lengths


class RecurrentLitModule(pl.LightningModule):
    """Logs once per validation: val_loss, val_acc, train_loss (the running mean since the
    last validation, dropout on), train_loss_eval (a fixed training subset in eval mode, the
    datamodule's second validation loader) and gap = val_loss - train_loss_eval.

    All per-batch values stay on the device inside torchmetrics accumulators; the host reads
    them once per validation, so logging adds no per-step synchronisation.
    """

    def __init__(
        self,
        net: SequenceModel,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        train_objective: str = "step_mean",
    ) -> None:
        super().__init__()
        self.net, self.spec = net, net.spec
        # A per-step task's spec may ask that each sequence weigh the same in the loss
        # (anbn's data.loss_weighting=string); otherwise every real step weighs the same.
        self.per_sequence = bool(getattr(net.spec, "per_sequence_loss", False))
        # model.train_objective=sequence_sum trains on each sequence's summed loss (a
        # per-sequence update's gradient); the logged losses stay per-step means.
        self.sum_over_steps = train_objective == "sequence_sum" and net.spec.per_step
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_loss, self.train_loss_eval = MeanMetric(), MeanMetric()
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc, self.test_acc = MeanMetric(), MeanMetric()
        # The loss kind's own metric beside loss and accuracy (MSE, frame accuracy), if any.
        self.kind = loss_kind(net.spec.loss)
        self.val_extra, self.test_extra = self.kind.extra_metric(), self.kind.extra_metric()

    def transfer_batch_to_device(
        self, batch: object, device: torch.device, dataloader_idx: int
    ) -> object:
        # Batches are flat sequences of tensors: move them directly instead of Lightning's
        # generic recursive collection walk, which costs more than the move itself on a CPU.
        if isinstance(batch, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in batch):
            return tuple(t.to(device, non_blocking=True) for t in batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, lengths)

    # -- loss and accuracy per task kind ------------------------------------------------
    def _loss_and_hits(
        self, batch: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (mean loss, per-item hits, predictions, targets) over real steps only."""
        x, y, lengths = trim_padding(batch, self.spec)
        out = self(x, lengths)
        weights = None
        if self.spec.per_step:
            mask = step_mask(lengths, x.shape[1])
            if self.per_sequence:
                weights = sequence_weights(lengths, x.shape[1])[mask]
            out, y = out[mask], y[mask]
        out = self.kind.prepare(out, y)
        return self.kind.loss(out, y, weights), self.kind.hits(out, y, self.spec), out, y

    def _weight(self, batch: tuple[torch.Tensor, ...], hits: torch.Tensor) -> int:
        """A batch's share in an epoch mean: its sequences when each sequence weighs the
        same in the loss, else its real steps."""
        return len(batch[2]) if self.per_sequence else hits.numel()

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss, hits, _, _ = self._loss_and_hits(batch)
        self.train_loss.update(loss.detach(), weight=self._weight(batch, hits))
        if self.sum_over_steps:
            # The mean over real steps times the real steps per sequence: each sequence's sum,
            # averaged over the batch's sequences.
            lengths = batch[2]
            return loss * lengths.sum() / len(lengths)
        return loss

    def validation_step(
        self, batch: tuple[torch.Tensor, ...], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        loss, hits, out, y = self._loss_and_hits(batch)
        if dataloader_idx == 1:  # the training subset, scored like the validation set
            self.train_loss_eval.update(loss, weight=self._weight(batch, hits))
            return
        self.val_loss.update(loss, weight=self._weight(batch, hits))
        self.val_acc.update(hits)
        if self.val_extra is not None:
            self.val_extra.update(out, y)

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        loss, hits, out, y = self._loss_and_hits(batch)
        self.test_loss.update(loss, weight=self._weight(batch, hits))
        self.test_acc.update(hits)
        if self.test_extra is not None:
            self.test_extra.update(out, y)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        val_loss = self.val_loss.compute()
        metrics = {"val_loss": val_loss, "val_acc": self.val_acc.compute()}
        if self.train_loss_eval.update_count > 0:
            train_eval = self.train_loss_eval.compute()
            metrics.update(train_loss_eval=train_eval, gap=val_loss - train_eval)
        if self.train_loss.update_count > 0:
            metrics["train_loss"] = self.train_loss.compute()
        if self.val_extra is not None:
            metrics[f"val_{self.kind.extra}"] = self.val_extra.compute()
        self.log_dict(metrics, on_epoch=True, prog_bar=True)
        for m in (self.train_loss, self.train_loss_eval, self.val_loss, self.val_acc,
                  self.val_extra):
            if m is not None:
                m.reset()

    def on_test_epoch_end(self) -> None:
        metrics = {"test_loss": self.test_loss.compute(), "test_acc": self.test_acc.compute()}
        if self.test_extra is not None:
            metrics[f"test_{self.kind.extra}"] = self.test_extra.compute()
        self.log_dict(metrics, on_epoch=True)
        for m in (self.test_loss, self.test_acc, self.test_extra):
            if m is not None:
                m.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        optimizer = self.optimizer(self.parameters())
        if self.scheduler is None:
            return optimizer
        # Budgets count optimiser steps, so schedules advance per step, not per epoch.
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler(optimizer), "interval": "step"}}


