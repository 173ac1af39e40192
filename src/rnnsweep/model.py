"""The recurrent network: one class for every cell, a dropout and a linear head."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnsweep.data.base import TaskSpec
from rnnsweep.schema import BIAS_KEYS

RNN_CLASSES: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
GATE_BLOCKS = {"rnn": 1, "lstm": 4, "gru": 3}



class SequenceModel(nn.Module):
    """nn.RNN / nn.LSTM / nn.GRU with dropout between layers and before the head.

    Sequence-level tasks read the last real step's top-layer state; per-step tasks read
    every output step. Variable-length batches are packed so padding never updates a state.
    """

    def __init__(
        self,
        cell: str,
        spec: TaskSpec,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        gate_bias: dict[str, float | None] | None = None,
    ) -> None:
        super().__init__()
        if cell not in RNN_CLASSES:
            raise ValueError(f"cell={cell!r} is invalid: allowed: {', '.join(RNN_CLASSES)}")
        self.cell, self.spec = cell, spec
        self.rnn = RNN_CLASSES[cell](
            input_size=spec.input_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, spec.output_size)
        for key, value in (gate_bias or {}).items():
            if key not in BIAS_KEYS[cell]:
                raise ValueError(f"cell.{key} is invalid for cell {cell}: allowed: "
                                 f"{', '.join(BIAS_KEYS[cell]) or 'none'}")
            if value is not None:  # None: PyTorch's default initialisation
                init_gate_bias(self.rnn, BIAS_KEYS[cell][key], value)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.spec.variable_length and lengths is not None:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out_packed, h = self.rnn(packed)
            out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=x.shape[1])
        else:
            out, h = self.rnn(x)
        if self.spec.per_step:
            return self.head(self.dropout(out))
        h_n = h[0] if isinstance(h, tuple) else h
        # h_n holds each sequence's state at its own last real step (packing handles lengths).
        return self.head(self.dropout(h_n[-1]))


def init_gate_bias(rnn: nn.RNNBase, block: int, value: float) -> None:
    """Set gate block `block`'s bias so b_ih + b_hh equals `value` in every layer."""
    h = rnn.hidden_size
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            getattr(rnn, f"bias_ih_l{layer}")[block * h : (block + 1) * h].fill_(value)
            getattr(rnn, f"bias_hh_l{layer}")[block * h : (block + 1) * h].zero_()


def init_forget_bias(lstm: nn.LSTM, value: float) -> None:
    """The LSTM's forget-gate bias (gate order i, f, g, o): b_ih + b_hh equals `value`."""
    init_gate_bias(lstm, BIAS_KEYS["lstm"]["forget_bias"], value)


def init_description(cell: str, gate_bias: dict[str, float | None]) -> str:
    """What a run's recurrent weights started from, for its `init` param."""
    set_keys = [f"{k}={v:g}" for k, v in gate_bias.items() if v is not None]
    base = "pytorch-default U(-1/sqrt(H), 1/sqrt(H))"
    return f"{base}; {', '.join(set_keys)}" if set_keys else base


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def recurrent_parameters(cell: str, input_size: int, hidden_size: int, num_layers: int) -> int:
    """PyTorch's count for the recurrent layers: gates * (H*(I+H) + 2H) per layer."""
    g = GATE_BLOCKS[cell]
    total = 0
    for layer in range(num_layers):
        i = input_size if layer == 0 else hidden_size
        total += g * (hidden_size * (i + hidden_size) + 2 * hidden_size)
    return total


def total_parameters(cell: str, spec: TaskSpec, hidden_size: int, num_layers: int) -> int:
    head = hidden_size * spec.output_size + spec.output_size
    return recurrent_parameters(cell, spec.input_size, hidden_size, num_layers) + head


def hidden_size_for_budget(cell: str, spec: TaskSpec, budget: int, num_layers: int) -> int:
    """The hidden size whose total parameter count is closest to `budget` (Chung et al. 2014)."""
    # Solve the quadratic g*L*H^2 + ... ~ budget approximately, then search the neighbourhood.
    g, n = GATE_BLOCKS[cell], num_layers
    a = g * (2 * n - 1)
    b = g * (spec.input_size + 2 * n) + spec.output_size
    guess = max(1, int((-b + math.sqrt(b * b + 4 * a * budget)) / (2 * a)))
    candidates = range(max(1, guess - 3), guess + 4)
    return min(candidates, key=lambda h: abs(total_parameters(cell, spec, h, n) - budget))
