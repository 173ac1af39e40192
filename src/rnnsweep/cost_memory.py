"""The cost probe's (rnnsweep.cost) kernel modes and memory of one training step.

Kernel modes: AS_RUN, the kernels training runs; EQUAL, the same kind of kernel for every
cell (`kernel_mode`, `equal_kernel_cell`; rnnsweep.cost's module doc says why).

Bytes per step = parameters + gradients + optimiser state (Adam: exp_avg and exp_avg_sq,
2 x parameters, plus one 4-byte step counter per parameter tensor) + activations + kernel
workspace. On CPU, activations are the tensors saved for backward, counted by
rnnsweep.measure.PeakMemory (the figure training logs); on CUDA, the allocator's peak minus
everything else (so activations and temporaries).

Kernel workspace: a vendor-fused RNN kernel keeps one opaque buffer for its backward, saved
as the 4th output of its op: oneDNN's `mkldnn_rnn_layer` (output, hy, cy, workspace) and
cuDNN's `_cudnn_rnn` (output, hy, cy, reserve, weight_buf). It holds what the per-step path
saves as separate gate tensors, laid out by the vendor (at B=64, T=20, H=64 oneDNN's is
4.9 MiB where ATen's per-step LSTM saves 2.5 MiB of activations in all), so it is a kernel's
choice, not the cell's need: it is read from those nodes' saved `result3` and shown apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, cast

import lightning.pytorch as pl
import torch

from rnnsweep.cells import CellSpec, FusedCPUKernel, cell_config
from rnnsweep.measure import PeakMemory, _storage_key, graph_nodes

AS_RUN, EQUAL = "as_run", "equal_kernels"
MODE_TEXT = {
    AS_RUN: "this machine's kernels, as training runs them",
    EQUAL: "equal kernels: oneDNN and cuDNN off, torch's own GRU and tanh RNN (kernel=torch), "
           "so every built-in cell runs ATen's per-step loop",
}
STEP_COUNTER_BYTES = 4  # Adam keeps a float32 scalar `step` per parameter tensor
# Autograd nodes of vendor-fused RNN kernels; `_saved_result3` is their workspace (doc).
WORKSPACE_NODES = ("MkldnnRnnLayerBackward", "CudnnRnnBackward")


def equal_kernel_cell(cell: CellSpec) -> CellSpec:
    """The cell as the equal-kernel mode builds it: a cell with rnnsweep's fused CPU kernel
    (FusedCPUKernel: GRU, tanh RNN) gets kernel=torch, torch's own module; others as given
    (they run under the mode's backend flags alone)."""
    from hydra.utils import get_class

    node = cell_config(cell)
    cls = get_class(str(node["_target_"]))
    if isinstance(cls, type) and issubclass(cls, FusedCPUKernel):
        return {**node, "kernel": "torch"}
    return cell


@contextmanager
def kernel_mode(mode: str) -> Iterator[None]:
    """AS_RUN: nothing changes. EQUAL: oneDNN and cuDNN off, so torch's RNNs fall back to
    ATen's per-step loop. Only the `enabled` flags are set (torch.backends.mkldnn.flags()
    would also reset oneDNN's TF32 and precision settings, and warn on CPU-only builds)."""
    if mode == AS_RUN:
        yield
        return
    if mode != EQUAL:
        raise ValueError(f"mode={mode!r} is invalid: allowed: {AS_RUN}, {EQUAL}")
    saved = torch.backends.mkldnn.enabled, torch.backends.cudnn.enabled
    torch.backends.mkldnn.enabled = torch.backends.cudnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled, torch.backends.cudnn.enabled = saved


def unit_label(mode: str, cell: str) -> str:
    """A timed unit's name in `SizeCost.order`: the cell as run, `cell@equal_kernels`."""
    return cell if mode == AS_RUN else f"{cell}@{mode}"


@dataclass
class Memory:
    """Bytes of one training step (module doc). `activations` excludes `workspace`."""

    params: int
    grads: int
    optimizer: int
    activations: int
    workspace: int = 0  # a fused vendor kernel's opaque buffer for backward

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations + self.workspace

    @property
    def model_state(self) -> int:
        """Weights, gradients and Adam state: 3/4 GRU/LSTM by structure."""
        return self.params + self.grads + self.optimizer


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def kernel_workspace_bytes(out: torch.Tensor) -> int:
    """Bytes of the vendor RNN workspaces saved in the graph that produced `out` (module
    doc); call before backward, which frees them. Shared storages count once."""
    found: dict[tuple[int, int], int] = {}
    for fn in graph_nodes(out):
        if type(fn).__name__.startswith(WORKSPACE_NODES):
            ws = getattr(fn, "_saved_result3", None)
            if isinstance(ws, torch.Tensor):
                key = _storage_key(ws)
                found[key] = key[1]
    return sum(found.values())


class MeasuredStep(Protocol):
    """What measure_memory reads of a training step (rnnsweep.cost_step.TrainingStep is one):
    calling it runs the step, with a hook between the loss and its backward."""

    net: torch.nn.Module
    batch: tuple[torch.Tensor, ...]
    grad_bytes: int

    def __call__(self, before_backward: Callable[[torch.Tensor], None] | None = None
                 ) -> None: ...

    def param_bytes(self) -> int: ...

    def optimizer_bytes(self) -> int: ...


def measure_memory(step: MeasuredStep) -> Memory:
    """One (untimed) step with the accounting on; call after warm-up so Adam state exists,
    and under the kernel mode being measured (rnnsweep.cost.kernel_mode)."""
    device = next(step.net.parameters()).device
    workspace = 0

    def read_workspace(loss: torch.Tensor) -> None:
        nonlocal workspace
        workspace = kernel_workspace_bytes(loss)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step(read_workspace)
        torch.cuda.synchronize(device)
        peak = int(torch.cuda.max_memory_allocated(device))
        fixed = step.param_bytes() + step.grad_bytes + step.optimizer_bytes()
        return Memory(step.param_bytes(), step.grad_bytes, step.optimizer_bytes(),
                      peak - fixed - workspace, workspace)
    # Drive the same callback training uses, so the probe and the logged figure agree.
    probe = PeakMemory(probe_batches=1)
    # PeakMemory reads only the module's device and parameters on CPU, never the trainer.
    trainer, module = cast(pl.Trainer, None), cast(pl.LightningModule, _DeviceView(step.net))
    probe.on_fit_start(trainer, module)
    probe.on_train_batch_start(trainer, module, step.batch, 0)

    def before_backward(loss: torch.Tensor) -> None:
        probe.on_before_backward(trainer, module, loss)  # closes the saved-tensor hook
        read_workspace(loss)

    try:
        step(before_backward)
    finally:
        probe.on_train_batch_end()
    # The workspace is a saved tensor too: PeakMemory's count holds it once.
    return Memory(step.param_bytes(), step.grad_bytes, step.optimizer_bytes(),
                  probe.current() - workspace, workspace)


class _DeviceView:
    """What PeakMemory asks of a LightningModule: `.device` and `.parameters()`."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.parameters = net.parameters
        self.device = next(net.parameters()).device
