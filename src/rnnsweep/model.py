"""The recurrent network: any cell (rnnsweep.cells), a dropout and a linear head."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnsweep.cells import CellSpec, build_cell, cell_keys, cell_name, recurrent_parameters
from rnnsweep.data.spec import TaskSpec


class SequenceModel(nn.Module):
    """A cell with dropout before the head.

    Every cell gets padded batches: cells are causal (step t sees steps <= t only), so the
    real steps' outputs do not depend on the padding after them. Sequence-level tasks read
    each sequence's last real step; per-step tasks read every step and the loss masks the
    padding. Padded input keeps torch's LSTM on its fused CPU kernel (oneDNN), which a packed
    batch leaves for a per-step path; a cell that sets `needs_packing = True` (an
    ``nn.RNNBase`` whose padding would leak, none of the shipped ones) still gets packing.
    """

    def __init__(self, cell: CellSpec, spec: TaskSpec, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.cell, self.spec = cell_name(cell), spec
        self.rnn = build_cell(cell, spec.input_size, hidden_size, num_layers, dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, spec.output_size)

    @property
    def packs(self) -> bool:
        """Whether variable-length batches go to the cell packed (see the class docstring)."""
        return bool(getattr(self.rnn, "needs_packing", False)) and isinstance(
            self.rnn, nn.RNNBase)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        variable = self.spec.variable_length and lengths is not None
        if variable and self.packs:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out_packed, _ = self.rnn(packed)
            out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=x.shape[1])
        else:
            out, _ = self.rnn(x)
        if self.spec.per_step:
            return self.head(self.dropout(out))
        if variable:
            last = out[torch.arange(out.shape[0], device=out.device), lengths - 1]
        else:
            last = out[:, -1]
        return self.head(self.dropout(last))


def init_description(cell: CellSpec) -> str:
    """What a run's recurrent weights started from, for its `init` param."""
    set_keys = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in cell_keys(cell).items() if v is not None]
    base = "pytorch-default U(-1/sqrt(H), 1/sqrt(H))"
    return f"{base}; {', '.join(set_keys)}" if set_keys else base


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def total_parameters(cell: CellSpec, spec: TaskSpec, hidden_size: int, num_layers: int) -> int:
    head = hidden_size * spec.output_size + spec.output_size
    return recurrent_parameters(cell, spec.input_size, hidden_size, num_layers) + head


def hidden_size_for_budget(cell: CellSpec, spec: TaskSpec, budget: int, num_layers: int) -> int:
    """The hidden size whose total parameter count is closest to `budget` (Chung et al.
    2014); counts grow with the hidden size, so a bisection finds the crossing."""
    lo, hi = 1, 2
    while total_parameters(cell, spec, hi, num_layers) < budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # invariant: count(lo) < budget <= count(hi), or lo == 1
        mid = (lo + hi) // 2
        if total_parameters(cell, spec, mid, num_layers) < budget:
            lo = mid
        else:
            hi = mid
    return min((lo, hi), key=lambda h: abs(total_parameters(cell, spec, h, num_layers) - budget))
