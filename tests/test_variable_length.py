"""Padding never reaches the loss, the metrics or the final state: the same sequence padded
to two lengths gives identical outputs and loss through the LightningModule."""

from __future__ import annotations

import pytest
import torch

from rnnsweep import cost_step
from rnnsweep.data.spec import TaskSpec
from rnnsweep.lit_module import RecurrentLitModule, trim_padding
from rnnsweep.measure import rnn_backend
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


def packed_reference(model: SequenceModel, x: torch.Tensor,
                     lengths: torch.Tensor) -> torch.Tensor:
    """The model's output computed the packed way (torch's own variable-length path)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, h = model.rnn(packed)
    if model.spec.per_step:
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return model.head(model.dropout(out))
    return model.head(model.dropout((h[0] if isinstance(h, tuple) else h)[-1]))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("kind", list(SPECS))
def test_padded_batches_match_the_packed_path_in_outputs_loss_and_gradients(cell, kind):
    """Training runs padded batches (the fused kernels stay on); for torch's cells the
    result equals the packed path's to 1e-5: outputs at real steps, loss, every gradient."""
    spec = SPECS[kind]
    module = lit(cell, spec)
    gen = torch.Generator().manual_seed(3)
    lengths = torch.tensor([9, 4, 1, 7, 9, 2])
    x = torch.randn(len(lengths), 11, spec.input_size, generator=gen)  # 2 steps pure padding
    if spec.per_step:
        y = (torch.rand(len(lengths), 11, spec.output_size, generator=gen) > 0.5).float()
    elif spec.loss == "ce":
        y = torch.randint(0, spec.output_size, (len(lengths),), generator=gen)
    else:
        y = torch.randn(len(lengths), spec.output_size, generator=gen)
    module.train()

    def grads(loss: torch.Tensor) -> list[torch.Tensor]:
        return [g.clone() for g in torch.autograd.grad(loss, list(module.parameters()))]

    loss, _, _, _ = module._loss_and_hits((x, y, lengths))
    padded_grads = grads(loss)
    ref_out = packed_reference(module.net, x, lengths)
    if spec.per_step:
        mask = torch.arange(11)[None, :] < lengths[:, None]
        ref_loss = cost_step.task_loss(spec, ref_out[mask][None], y[mask][None], torch.tensor(
            [int(mask.sum())]))
        out = module.net(x, lengths)
        torch.testing.assert_close(out[mask], ref_out[mask], rtol=1e-5, atol=1e-5)
    else:
        ref_loss = cost_step.task_loss(spec, ref_out, y, lengths)
        torch.testing.assert_close(module.net(x, lengths), ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    for got, want in zip(padded_grads, grads(ref_loss), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_variable_length_lstm_batch_runs_the_fused_kernel():
    """The point of padding: the LSTM's training forward dispatches to oneDNN's fused RNN
    kernel, which a packed batch would leave for a per-step path."""
    spec = SPECS["per-step-bce"]
    model = lit("lstm", spec).net
    x = torch.randn(4, 6, spec.input_size)
    assert not model.packs
    assert rnn_backend(model, x) == "oneDNN (fused RNN kernel)"
    # A cell that declares it needs packing still gets it.
    model.rnn.needs_packing = True
    assert model.packs


def test_the_lit_module_cuts_a_batch_to_its_longest_real_sequence():
    spec = SPECS["per-step-bce"]
    x, y, lengths = torch.zeros(3, 10, 3), torch.zeros(3, 10, 3), torch.tensor([4, 6, 2])
    tx, ty, tl = trim_padding((x, y, lengths), spec)
    assert tx.shape[1] == 6 and ty.shape[1] == 6 and torch.equal(tl, lengths)
    seq = SPECS["sequence-ce"]
    tx, ty, _ = trim_padding((x, torch.zeros(3), lengths), seq)
    assert tx.shape[1] == 6 and ty.shape == (3,)
