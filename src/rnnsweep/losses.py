"""The three kinds of task loss, one object each: what a task's `spec.loss` names.

Each kind owns everything that depends on it, so no module branches on the name: the loss
over real steps (optionally weighted per item), the per-item hits behind `*_acc`, the extra
metric it adds beside loss and accuracy (`*_mse`, `*_frame_acc`), the trivial predictor, a
random target of its shape (the cost probe's batch) and the test metric the report leads
with. `loss_kind(spec)` (or `LOSS_KINDS[name]`) hands back the object.

- mse: regression; a hit is an output within the task's tolerance of every target value.
- bce: multi-label sigmoid outputs, the loss summed over outputs per step (Chung et al.
  2014); a hit is every output right; frame accuracy is TP / (TP + FP + FN) over all real
  frames (Bay et al. 2009, as reported by Boulanger-Lewandowski et al. 2012).
- ce: classification; a hit is the right class; the report leads with accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torchmetrics import MeanSquaredError, Metric


def step_mask(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(B, T) True where a step is real, False where it is padding."""
    return torch.arange(seq_len, device=lengths.device)[None, :] < lengths[:, None]


def sequence_weights(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(B, T) step weights 1 / (B * length) on real steps, 0 on padding: a per-step loss
    weighted by them gives every sequence the same weight, whatever its length."""
    mask = step_mask(lengths, seq_len)
    return mask / (lengths[:, None].to(torch.float32) * len(lengths))


def reduce(per_item: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean over items, or their weighted sum when weights (summing to 1) are given."""
    return per_item.mean() if weights is None else (per_item * weights).sum()


class FrameAccuracy(Metric):
    """TP / (TP + FP + FN) over every output of every real step; 1 when nothing was either
    predicted or sounding (every frame right)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("tp", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("err", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, out: torch.Tensor, y: torch.Tensor) -> None:
        pred, truth = out > 0, y > 0.5
        self.tp += (pred & truth).sum()
        self.err += (pred ^ truth).sum()  # false positives + false negatives

    def compute(self) -> torch.Tensor:
        total = self.tp + self.err
        return torch.where(total > 0, self.tp / total.clamp(min=1), torch.ones_like(total))


class TaskShape(Protocol):
    """What a loss kind reads of a task's spec (rnnsweep.data.base.TaskSpec)."""

    output_size: int
    acc_tolerance: float


@dataclass(frozen=True)
class LossKind:
    """A task's loss: subclasses fill in the arithmetic."""

    name: str
    # The metric logged beside loss and accuracy as val_<extra> / test_<extra>, or None.
    extra: str | None
    # The test metric the report, the console and the study run lead with.
    headline: str

    @property
    def headline_maximized(self) -> bool:
        return self.headline.endswith("_acc")

    def metric_names(self, split: str) -> tuple[str, ...]:
        """`<split>_loss`, `<split>_acc` and the extra metric: what a validation logs."""
        extra = (f"{split}_{self.extra}",) if self.extra else ()
        return (f"{split}_loss", f"{split}_acc", *extra)

    def prepare(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The outputs in the shape the loss, hits and extra metric compare with y."""
        return out

    def extra_metric(self) -> Metric | None:
        """A fresh accumulator for the extra metric (updated with outputs and targets)."""
        return None

    def loss(self, out: torch.Tensor, y: torch.Tensor,
             weights: torch.Tensor | None = None) -> torch.Tensor:
        """The mean loss over items (steps or sequences) of prepared outputs."""
        raise NotImplementedError

    def hits(self, out: torch.Tensor, y: torch.Tensor, spec: TaskShape) -> torch.Tensor:
        raise NotImplementedError

    def trivial(self, y_train: torch.Tensor, y_val: torch.Tensor,
                spec: TaskShape) -> tuple[float, float]:
        """(loss, accuracy) on y_val of the trivial predictor fitted on y_train."""
        raise NotImplementedError

    def random_target(self, lead: tuple[int, ...], spec: TaskShape,
                      gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class MeanSquared(LossKind):
    def prepare(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return out.reshape(y.shape)

    def extra_metric(self) -> Metric | None:
        return MeanSquaredError()

    def loss(self, out: torch.Tensor, y: torch.Tensor,
             weights: torch.Tensor | None = None) -> torch.Tensor:
        if weights is None:
            return F.mse_loss(out, y)
        return reduce(((out - y) ** 2).reshape(len(y), -1).mean(-1), weights)

    def hits(self, out: torch.Tensor, y: torch.Tensor, spec: TaskShape) -> torch.Tensor:
        return ((out - y).abs() < spec.acc_tolerance).all(dim=-1).float()

    def trivial(self, y_train: torch.Tensor, y_val: torch.Tensor,
                spec: TaskShape) -> tuple[float, float]:
        mean = y_train.float().mean(0, keepdim=True)  # the training mean
        loss = F.mse_loss(mean.expand_as(y_val), y_val)
        acc = ((mean - y_val).abs() < spec.acc_tolerance).all(-1).float().mean()
        return float(loss), float(acc)

    def random_target(self, lead: tuple[int, ...], spec: TaskShape,
                      gen: torch.Generator) -> torch.Tensor:
        shape = lead if spec.output_size == 1 else (*lead, spec.output_size)
        return torch.rand(*shape, generator=gen)


class MultiLabel(LossKind):
    def extra_metric(self) -> Metric | None:
        return FrameAccuracy()

    def loss(self, out: torch.Tensor, y: torch.Tensor,
             weights: torch.Tensor | None = None) -> torch.Tensor:
        # Negative log-likelihood per step, summed over outputs (Chung et al. 2014).
        per_step = F.binary_cross_entropy_with_logits(out, y, reduction="none").sum(-1)
        return reduce(per_step, weights)

    def hits(self, out: torch.Tensor, y: torch.Tensor, spec: TaskShape) -> torch.Tensor:
        return ((out > 0).float() == y).all(dim=-1).float()

    def trivial(self, y_train: torch.Tensor, y_val: torch.Tensor,
                spec: TaskShape) -> tuple[float, float]:
        p = y_train.float().mean(0, keepdim=True).clamp(1e-6, 1 - 1e-6)  # output frequencies
        logits = torch.log(p / (1 - p)).expand_as(y_val)
        loss = F.binary_cross_entropy_with_logits(logits, y_val, reduction="none").sum(-1)
        acc = ((p > 0.5).float() == y_val).all(-1).float().mean()
        return float(loss.mean()), float(acc)

    def random_target(self, lead: tuple[int, ...], spec: TaskShape,
                      gen: torch.Generator) -> torch.Tensor:
        return (torch.rand(*lead, spec.output_size, generator=gen) > 0.5).float()


class Classes(LossKind):
    def loss(self, out: torch.Tensor, y: torch.Tensor,
             weights: torch.Tensor | None = None) -> torch.Tensor:
        return reduce(F.cross_entropy(out, y, reduction="none"), weights)

    def hits(self, out: torch.Tensor, y: torch.Tensor, spec: TaskShape) -> torch.Tensor:
        return (out.argmax(-1) == y).float()

    def trivial(self, y_train: torch.Tensor, y_val: torch.Tensor,
                spec: TaskShape) -> tuple[float, float]:
        counts = torch.bincount(y_train, minlength=spec.output_size).float()  # class prior
        prior = (counts / counts.sum()).clamp(min=1e-6)
        loss = F.nll_loss(torch.log(prior).expand(len(y_val), -1), y_val)
        return float(loss), float((y_val == counts.argmax()).float().mean())

    def random_target(self, lead: tuple[int, ...], spec: TaskShape,
                      gen: torch.Generator) -> torch.Tensor:
        return torch.randint(0, spec.output_size, lead, generator=gen)


LOSS_KINDS: dict[str, LossKind] = {
    "mse": MeanSquared("mse", extra="mse", headline="test_loss"),
    "bce": MultiLabel("bce", extra="frame_acc", headline="test_loss"),
    "ce": Classes("ce", extra=None, headline="test_acc"),
}


def headline_metric(name: str) -> str | None:
    """The test metric the loss kind `name` leads with; None for an unknown name."""
    known = LOSS_KINDS.get(name)
    return known.headline if known else None


def loss_kind(name: str) -> LossKind:
    """The loss kind a task spec's `loss` names; ValueError naming the allowed ones."""
    try:
        return LOSS_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown loss kind {name!r} (allowed: "
                         f"{', '.join(LOSS_KINDS)})") from None
