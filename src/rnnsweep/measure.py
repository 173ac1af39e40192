"""Peak training memory per step and the kernels a cell actually runs on.

On CUDA the allocator's own peak (`torch.cuda.max_memory_allocated`) is exact. On CPU there
is no allocator counter, so the peak is the bytes of tensors saved for backward during one
training step (`torch.autograd.graph.saved_tensors_hooks`): the activation memory that grows
with batch size, sequence length and hidden size. The pack hook runs in Python once per saved
tensor, which costs a lot for cells run step by step (nn.GRU on CPU saves several tensors per
time step), so the hook is active only during the first `probe_batches` training steps; the
saved bytes of a step depend only on the batch shape, so a few full batches give the peak.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    """Tensors sharing one storage (views, a weight saved twice) count once."""
    try:
        storage = t.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    except (RuntimeError, NotImplementedError):  # opaque layouts have no plain storage
        return id(t), t.numel() * t.element_size()


class PeakMemory(Callback):
    """Tracks `peak_bytes`: the largest training-step memory seen so far (see module doc)."""

    def __init__(self, probe_batches: int) -> None:
        self.probe_batches = probe_batches
        self.peak_bytes = 0
        self.device = "cpu"
        self._hooks: Any = None
        self._saved: dict[tuple[int, int], int] = {}
        self._param_keys: set[tuple[int, int]] = set()
        self._probed = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.device = pl_module.device.type
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        # Weights saved for backward are not activations; they are counted once, as parameters.
        self._param_keys = {_storage_key(p) for p in pl_module.parameters()}

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in self._param_keys:
            self._saved[key] = key[1]
        return t

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.device == "cuda" or self._probed >= self.probe_batches:
            return
        self._saved = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()

    def _close_probe(self) -> None:
        if self._hooks is None:
            return
        self._hooks.__exit__(None, None, None)
        self._hooks = None
        self._probed += 1
        self.peak_bytes = max(self.peak_bytes, sum(self._saved.values()))

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        # Everything the backward pass needs has been saved by now: the step's peak.
        self._close_probe()

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._close_probe()  # a step that skipped backward must not leave the hook active

    def current(self) -> int:
        """Peak bytes so far; on CUDA read from the allocator at the time of asking."""
        if self.device == "cuda":
            self.peak_bytes = int(torch.cuda.max_memory_allocated())
        return self.peak_bytes

    def on_exception(self, *args: Any, **kwargs: Any) -> None:
        self._close_probe()


def graph_nodes(out: torch.Tensor) -> Iterator[Any]:
    """Every node of the autograd graph that produced `out`, once each."""
    # Nodes are kept alive while walking: an id() of a freed wrapper could be reused.
    seen: dict[int, Any] = {}
    stack = [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen[id(fn)] = fn
        yield fn
        stack.extend(next_fn for next_fn, _ in fn.next_functions)


def rnn_backend(module: torch.nn.Module, example: torch.Tensor) -> str:
    """The recurrent kernel family a training forward really dispatches to, read from the
    autograd graph it builds (MkldnnRnnLayerBackward, CudnnRnnBackward, or per-step ops).

    Expectation is not enough: on CPU nn.LSTM runs fused oneDNN kernels while nn.GRU falls
    back to ATen's per-step loop, so the same code is fast for one cell and slow for the other.
    """
    probe = copy.deepcopy(module).train()
    # fork_rng: dropout in the probe must not shift the training run's random stream.
    with torch.random.fork_rng(devices=[]):
        return graph_backend(probe(example))


def graph_backend(out: torch.Tensor) -> str:
    """The recurrent kernel family in the autograd graph that produced `out`."""
    from rnnsweep.cells import fast_gru

    names = {type(fn).__name__ for fn in graph_nodes(out)}
    # rnnsweep's own fused CPU layers (autograd Functions: node "<class>Backward").
    for layer, name in fast_gru.KERNEL_NAMES.items():
        if any(n == f"{layer.__name__}Backward" for n in names):
            return name
    if any("Cudnn" in n for n in names):
        return f"cuDNN {torch.backends.cudnn.version()}"
    if any("Mkldnn" in n for n in names):
        return "oneDNN (fused RNN kernel)"
    return "ATen (per-step kernels)"
