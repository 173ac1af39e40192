"""One training step of one cell, built and timed as the cost probe (rnnsweep.cost) runs it:
the task's random batch, its loss as RecurrentLitModule computes it, Adam, clipping, and
the timer that reads the step's CPU time (or CUDA events)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rnnsweep.cells import CellSpec
from rnnsweep.cost_memory import nbytes
from rnnsweep.data.spec import TaskSpec
from rnnsweep.losses import loss_kind
from rnnsweep.model import SequenceModel


@dataclass(frozen=True)
class Size:
    hidden_size: int
    num_layers: int

    def label(self) -> str:
        return f"H={self.hidden_size} L={self.num_layers}"


def example_batch(spec: TaskSpec, batch_size: int, seq_len: int,
                  device: torch.device, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs and targets of the task's shapes (costs do not depend on the values)."""
    gen = torch.Generator().manual_seed(seed)
    b, t = batch_size, seq_len
    x = torch.rand(b, t, spec.input_size, generator=gen)
    lead = (b, t) if spec.per_step else (b,)
    y = loss_kind(spec.loss).random_target(lead, spec, gen)
    lengths = torch.full((b,), t, dtype=torch.long)
    return tuple(v.to(device) for v in (x, y, lengths))


def task_loss(spec: TaskSpec, out: torch.Tensor, y: torch.Tensor,
              lengths: torch.Tensor) -> torch.Tensor:
    """The training loss as RecurrentLitModule computes it (real steps only)."""
    if spec.per_step:
        mask = torch.arange(out.shape[1], device=out.device)[None, :] < lengths[:, None]
        out, y = out[mask], y[mask]
    kind = loss_kind(spec.loss)
    return kind.loss(kind.prepare(out, y), y)


class TrainingStep:
    """One cell's model, Adam and batch; calling it runs one full training step.

    A LightningModule would add only Lightning's per-step bookkeeping; the model, loss,
    clipping and optimiser are what training runs, so cells are compared on those alone.
    """

    def __init__(self, cell: CellSpec, spec: TaskSpec, size: Size,
                 batch: tuple[torch.Tensor, ...], device: torch.device,
                 clip: float | None = 1.0, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.spec, self.cell = spec, cell
        self.net = SequenceModel(cell, spec, size.hidden_size, size.num_layers).to(device)
        self.net.train()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.batch, self.clip = batch, clip
        self.grad_bytes = 0

    def __call__(self, before_backward: Callable[[torch.Tensor], None] | None = None) -> None:
        x, y, lengths = self.batch
        loss = task_loss(self.spec, self.net(x, lengths), y, lengths)
        if before_backward is not None:
            before_backward(loss)
        loss.backward()
        if self.clip is not None:  # as the Trainer does with trainer.gradient_clip_val
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.grad_bytes = sum(nbytes(p.grad) for p in self.net.parameters()
                              if p.grad is not None)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def param_bytes(self) -> int:
        return sum(nbytes(p) for p in self.net.parameters())

    def optimizer_bytes(self) -> int:
        return sum(nbytes(v) for state in self.optimizer.state.values()
                   for v in state.values() if isinstance(v, torch.Tensor))


class StepTimer:
    """Times one training step: the calling thread's CPU time at one torch thread, the
    process's CPU time with more, CUDA events on a GPU (rnnsweep.cost's module doc)."""

    def __init__(self, device: torch.device, threads: int) -> None:
        self.device = device
        if device.type == "cuda":
            self.name = "CUDA events (synchronised)"
        elif threads == 1:
            self.name, self._clock = "thread CPU time", time.thread_time
        else:
            self.name, self._clock = "process CPU time", time.process_time

    def seconds(self, fn: Callable[[], None]) -> float:
        """Seconds of one step."""
        if self.device.type == "cuda":
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            torch.cuda.synchronize(self.device)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000
        t0 = self._clock()
        fn()
        return self._clock() - t0

    def fastest(self, fn: Callable[[], None], steps: int) -> float:
        """The fastest of `steps` single-step timings: interference (a neighbour's cache
        traffic, a sibling hyper-thread) only ever adds time, so the minimum is the least
        disturbed figure. On the 2-core dev machine, beside two CPU burners, it kept the
        H=128 x 2-layer GRU/LSTM ratio within 6 % of the quiet one (3 pairs), where the mean
        of each round's steps moved it by up to 13 %."""
        return min(self.seconds(fn) for _ in range(steps))
