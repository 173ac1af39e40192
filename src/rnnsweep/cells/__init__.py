"""The recurrent layers a study compares, and the interface a cell of your own implements.

A cell is any ``torch.nn.Module`` class, named by ``_target_`` in ``conf/cell/<name>.yaml``
(or on the command line), that

- is built as ``Cell(input_size, hidden_size, num_layers, dropout, **keys)``, where ``keys``
  are the other keys of its YAML file (``name`` aside, the label studies and reports use)
  and ``dropout`` applies between stacked layers;
- has an attribute ``hidden_size``;
- maps ``x`` of shape (batch, steps, input_size) to ``(outputs, state)``, outputs of shape
  (batch, steps, hidden_size) from the top layer, causal (step t sees inputs up to t
  only); ``state`` is not read. Torch's own ``nn.RNNBase`` layers also get packed
  variable-length batches; any other cell is read at each sequence's last real step;
- may set ``gate_blocks`` (hidden-sized activations per step and layer; default 4, the
  LSTM's) for the memory estimate of the preflight.

Parameter counts, parameter-matched sizes and the cost probe's FLOPs are computed from the
built module (on PyTorch's meta device, so nothing is allocated), never from a formula per
cell, so a new cell needs no entry anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from hydra.errors import InstantiationException
from torch import nn

from rnnsweep.cells import fast_gru
from rnnsweep.targets import build, constructor_keys, plain

# A cell as callers give it: a built-in name, or a cell config (`_target_` and its keys).
CellSpec = str | Mapping[str, Any]
# What the model passes to every cell's constructor.
CELL_ARGUMENTS = ("input_size", "hidden_size", "num_layers", "dropout")
DEFAULT_GATE_BLOCKS = 4
# Constructor keys that choose how a cell computes, not what: left out of the `init` param.
NON_INIT_KEYS = ("kernel",)
# A cell's `kernel` key: "auto", a fused kernel where rnnsweep has one (the GRU and the tanh
# RNN on a CPU; its C++ step loop where it builds, else its Python loop) and torch's own
# elsewhere (cuDNN on a GPU); "python", the fused kernel with its Python loop; "torch",
# always torch's own.
KERNELS = ("auto", "python", "torch")


def init_gate_bias(rnn: nn.RNNBase, block: int, value: float) -> None:
    """Set gate block `block`'s bias so b_ih + b_hh equals `value` in every layer."""
    h = rnn.hidden_size
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            getattr(rnn, f"bias_ih_l{layer}")[block * h : (block + 1) * h].fill_(value)
            getattr(rnn, f"bias_hh_l{layer}")[block * h : (block + 1) * h].zero_()


class FusedCPUKernel:
    """For an nn.RNNBase cell with a fused CPU kernel (rnnsweep.cells.fast_gru, the same
    function as torch's): `kernel="auto"` runs it for a plain (batch, steps, input) tensor
    on the CPU with no initial state, where torch itself runs a loop of per-step cells
    (with its C++ step loop where that builds; `kernel="python"`: its Python loop);
    anything else (a packed batch, an initial state, a GPU) runs torch's own, as does
    `kernel="torch"` always. Parameters and state_dict stay torch's either way."""

    fused_cell = ""  # fast_gru's name for the cell: "gru" or "rnn_tanh"
    torch_kernel_name = ""
    kernel = "auto"  # an instance attribute set by the constructor; this for old pickles

    @staticmethod
    def check_kernel(kernel: str) -> str:
        if kernel not in KERNELS:
            raise ValueError(f"kernel={kernel!r} is invalid: allowed: {', '.join(KERNELS)}")
        return kernel

    def uses_fused_kernel(self: Any, x: Any, hx: torch.Tensor | None = None) -> bool:
        """Whether forward(x, hx) runs the fused CPU kernel."""
        w = self.weight_ih_l0
        return (self.kernel != "torch" and hx is None and type(x) is torch.Tensor
                and x.device.type == "cpu" and x.dim() == 3 and x.shape[1] > 0
                and x.shape[2] == self.input_size and x.dtype == w.dtype
                and w.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
                and self.batch_first and self.bias and not self.bidirectional
                and getattr(self, "nonlinearity", "tanh") == "tanh")

    def kernel_name(self, x: Any, hx: torch.Tensor | None = None) -> str:
        """The kernel forward(x, hx) runs: which path a batch takes, for checks."""
        if not self.uses_fused_kernel(x, hx):
            return self.torch_kernel_name
        layer = fast_gru.layer_for(self.fused_cell, x.dtype, self.kernel == "auto")
        return fast_gru.KERNEL_NAMES[layer]

    def forward(self: Any, input: Any, hx: torch.Tensor | None = None) -> tuple[Any, Any]:
        if not self.uses_fused_kernel(input, hx):
            return super().forward(input, hx)
        # _flat_weights: (w_ih, w_hh, b_ih, b_hh) per layer, what torch's own kernels read.
        weights = [self._flat_weights[4 * k: 4 * k + 4] for k in range(self.num_layers)]
        return fast_gru.forward_layers(self.fused_cell, input, weights, self.dropout,
                                       self.training, self.kernel == "auto")


class RNN(FusedCPUKernel, nn.RNN):
    """Torch's tanh RNN. No gates, so no gate-bias key: U(-1/sqrt(H), 1/sqrt(H)).
    `kernel`: see FusedCPUKernel."""

    gate_blocks = 1
    fused_cell = "rnn_tanh"
    torch_kernel_name = "torch nn.RNN"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, kernel: str = "auto") -> None:
        self.check_kernel(kernel)
        super().__init__(input_size, hidden_size, num_layers, batch_first=True,
                         dropout=dropout if num_layers > 1 else 0.0)
        self.kernel = kernel


class LSTM(nn.LSTM):
    """Torch's LSTM (fused kernels: cuDNN, oneDNN); gates (i, f, g, o). `forget_bias` sets
    b_ih + b_hh of the forget gate at initialisation; None: PyTorch's default."""

    gate_blocks = 4

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, forget_bias: float | None = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, batch_first=True,
                         dropout=dropout if num_layers > 1 else 0.0)
        if forget_bias is not None:
            init_gate_bias(self, 1, forget_bias)


class GRU(FusedCPUKernel, nn.GRU):
    """Torch's GRU; gates (r, z, n). `update_bias` sets b_ih + b_hh of the update gate z
    (z = 1 keeps the old state) at initialisation; None: PyTorch's default.
    `kernel`: see FusedCPUKernel."""

    gate_blocks = 3
    fused_cell = "gru"
    torch_kernel_name = "torch nn.GRU"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, update_bias: float | None = None,
                 kernel: str = "auto") -> None:
        self.check_kernel(kernel)
        super().__init__(input_size, hidden_size, num_layers, batch_first=True,
                         dropout=dropout if num_layers > 1 else 0.0)
        self.kernel = kernel
        if update_bias is not None:
            init_gate_bias(self, 1, update_bias)


# The cells the claims are about, nameable without a config. Any other cell (minGRU
# included, the worked example of a cell of one's own) is known only by its config.
BUILTIN: dict[str, str] = {"rnn": "rnnsweep.cells.RNN", "lstm": "rnnsweep.cells.LSTM",
                           "gru": "rnnsweep.cells.GRU"}


def cell_config(cell: CellSpec) -> dict[str, Any]:
    """A plain cell config: a built-in name becomes {name, _target_} with class defaults."""
    if isinstance(cell, str):
        if cell not in BUILTIN:
            raise ValueError(f"cell={cell!r} is invalid: allowed: {', '.join(BUILTIN)}")
        return {"name": cell, "_target_": BUILTIN[cell]}
    return plain(cell)


def cell_name(cell: CellSpec) -> str:
    """The label of a cell: its `name`, else its class name in lower case."""
    node = cell_config(cell)
    return str(node.get("name") or str(node["_target_"]).rsplit(".", 1)[-1].lower())


def cell_keys(cell: CellSpec) -> dict[str, Any]:
    """The cell's own constructor keys (gate biases and the like), for the `init` param;
    keys in NON_INIT_KEYS (how it computes, not what) are left out."""
    return constructor_keys(cell_config(cell), skip=NON_INIT_KEYS)


def build_cell(cell: CellSpec, input_size: int, hidden_size: int, num_layers: int = 1,
               dropout: float = 0.0) -> nn.Module:
    """The cell's module, built by Hydra from its `_target_` and keys."""
    node = cell_config(cell)
    return build(node, input_size=input_size, hidden_size=hidden_size,
                 num_layers=num_layers, dropout=dropout)


def gate_blocks(cell: CellSpec) -> int:
    from hydra.utils import get_class

    cls = get_class(cell_config(cell)["_target_"])
    return int(getattr(cls, "gate_blocks", DEFAULT_GATE_BLOCKS))


def meta_cell(cell: CellSpec, input_size: int, hidden_size: int, num_layers: int) -> nn.Module:
    """The cell built on the meta device: shapes without memory, for counting."""
    with torch.device("meta"):
        return build_cell(cell, input_size, hidden_size, num_layers)


def recurrent_parameters(cell: CellSpec, input_size: int, hidden_size: int,
                         num_layers: int) -> int:
    def count(h: int) -> int:
        return sum(p.numel() for p in meta_cell(cell, input_size, h, num_layers).parameters())

    try:
        return count(hidden_size)
    except (RuntimeError, InstantiationException):
        # Sizes too large even to describe (the memory preflight asks about them): recurrent
        # cells count a*H^2 + b*H + c weights, fitted exactly from H = 1, 2, 3.
        c1, c2, c3 = count(1), count(2), count(3)
        a = (c3 - 2 * c2 + c1) // 2
        b = c2 - c1 - 3 * a
        return a * hidden_size**2 + b * hidden_size + (c1 - a - b)


def recurrent_flops(cell: CellSpec, input_size: int, hidden_size: int, num_layers: int) -> int:
    """Forward FLOPs per time step: a multiply-add per weight-matrix entry, an add per bias."""
    return sum(2 * p.numel() if p.dim() > 1 else p.numel()
               for p in meta_cell(cell, input_size, hidden_size, num_layers).parameters())
