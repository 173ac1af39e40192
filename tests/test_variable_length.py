"""Padding never reaches the loss, the metrics or the final state: the same sequence padded
to two lengths gives identical outputs and loss through the LightningModule."""

from __future__ import annotations

import pytest
import torch

from rnnsweep.data.base import TaskSpec
from rnnsweep.lit_module import RecurrentLitModule
from rnnsweep.model import SequenceModel

# A cell known by its config only, as a cell of one's own is (conf/cell/mingru.yaml).
MINGRU = {"name": "mingru", "_target_": "rnnsweep.cells.mingru.MinGRU"}

SPECS = {
    "sequence-ce": TaskSpec(input_size=3, output_size=4, loss="ce", variable_length=True),
    "sequence-mse": TaskSpec(input_size=3, output_size=2, loss="mse", variable_length=True),
    "per-step-bce": TaskSpec(input_size=3, output_size=3, loss="bce", per_step=True,
                             variable_length=True),
}


def lit(cell: str, spec: TaskSpec) -> RecurrentLitModule:
    torch.manual_seed(0)
    m = RecurrentLitModule(SequenceModel(cell, spec, hidden_size=8, num_layers=2),
                           optimizer=torch.optim.Adam)
    return m.eval()


def batch(spec: TaskSpec, real: torch.Tensor, y_real: torch.Tensor, pad_to: int,
          other_len: int) -> tuple[torch.Tensor, ...]:
    """Row 0: the sequence under test; row 1: another sequence, so packing really sorts."""
    n = len(real)
    x = torch.full((2, pad_to, spec.input_size), 7.0)  # garbage padding, not zeros
    x[0, :n] = real
    x[1, :other_len] = torch.randn(other_len, spec.input_size)
    if spec.per_step:
        y = torch.zeros(2, pad_to, spec.output_size)
        y[0, :n] = y_real
        y[0, n:] = 1.0  # wrong targets in the padding must not count
    else:
        y = torch.stack([y_real, y_real])
    lengths = torch.tensor([n, other_len])
    return x, y, lengths


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", MINGRU])
@pytest.mark.parametrize("kind", list(SPECS))
def test_same_sequence_padded_to_two_lengths_gives_identical_outputs_and_loss(cell, kind):
    spec = SPECS[kind]
    torch.manual_seed(1)
    n = 5
    real = torch.randn(n, spec.input_size)
    if spec.per_step:
        y_real = (torch.rand(n, spec.output_size) > 0.5).float()
    elif spec.loss == "ce":
        y_real = torch.tensor(2)
    else:
        y_real = torch.randn(spec.output_size)
    module = lit(cell, spec)
    results = []
    for pad_to in (n, 12):
        # The companion row has length 1, so only row 0 decides every loss below.
        x, y, lengths = batch(spec, real, y_real, pad_to, other_len=1)
        with torch.no_grad():
            out = module(x, lengths)
            single = (x[:1], y[:1], lengths[:1])
            loss, hits, _, _ = module._loss_and_hits(single)
        row = out[0, :n] if spec.per_step else out[0]
        results.append((row, loss, hits))
    (o1, l1, h1), (o2, l2, h2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
    assert torch.equal(h1, h2)
    assert h1.numel() == (n if spec.per_step else 1)
