"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gates read only the
input, so the recurrence is linear in the state and runs as a parallel scan.

    z_t = sigmoid(W_z x_t),  h~_t = g(W_h x_t),  h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

with h_0 = 0 and g(x) = x + 0.5 for x >= 0, sigmoid(x) below (positive, so the scan runs in
log space, the paper's numerically stable form). Layers stack with dropout between them.
Added as one module and conf/cell/mingru.yaml, the example of a cell of one's own
(interface: rnnsweep.cells).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x) for the paper's positive activation g."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def log_space_scan(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t from h_0 = 0 along dim 1, for positive a and b:
    h_t = sum_{s<=t} exp(A_t - A_s) b_s with A = cumsum(log a) (Heinsen 2023)."""
    a_star = torch.cumsum(log_a, dim=1)
    return torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))


class MinGRULayer(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.to_gate_and_hidden = nn.Linear(input_size, 2 * hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, h_tilde = self.to_gate_and_hidden(x).chunk(2, dim=-1)
        log_z = -F.softplus(-k)  # log sigmoid(k)
        log_keep = -F.softplus(k)  # log (1 - sigmoid(k))
        return log_space_scan(log_keep, log_z + log_g(h_tilde))


class MinGRU(nn.Module):
    """A stack of minGRU layers with the interface of rnnsweep.cells."""

    gate_blocks = 2

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.layers = nn.ModuleList(
            MinGRULayer(input_size if i == 0 else hidden_size, hidden_size)
            for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        for i, layer in enumerate(self.layers):
            x = layer(self.dropout(x) if i > 0 else x)
        return x, None
