"""model.train_objective=sequence_sum and the rescaled-momentum SGD (the greff2017 protocol):
the training loss is each sequence's summed loss averaged over sequences, while logged losses
stay per-step means; the optimiser's step is lr * (1 - momentum) of Nesterov SGD's."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from rnnsweep.data.spec import TaskSpec
from rnnsweep.errors import ConfigError
from rnnsweep.lit_module import RecurrentLitModule
from rnnsweep.model import SequenceModel
from rnnsweep.optimizers import RescaledMomentumSGD

SPEC = TaskSpec(input_size=3, output_size=4, loss="bce", per_step=True, variable_length=True)
CELL = OmegaConf.create({"_target_": "torch.nn.LSTM"})


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([7, 2, 5])
    x = torch.randn(3, 7, 3, generator=g)
    y = (torch.rand(3, 7, 4, generator=g) > 0.5).float()
    return x, y, lengths


def _module(objective: str) -> RecurrentLitModule:
    torch.manual_seed(0)
    net = SequenceModel(CELL, SPEC, hidden_size=8, num_layers=1, dropout=0.0)
    module = RecurrentLitModule(net, optimizer=torch.optim.SGD, train_objective=objective)
    module.log = lambda *a, **k: None  # no trainer attached
    return module


def test_sequence_sum_trains_on_each_sequences_summed_loss_and_logs_the_step_mean():
    batch = _batch()
    x, y, lengths = batch
    mean_module, sum_module = _module("step_mean"), _module("sequence_sum")
    objective = sum_module.training_step(batch, 0)
    # By hand: BCE summed over outputs, per step; summed over each sequence's real steps;
    # averaged over the 3 sequences.
    out = sum_module.net(x, lengths)
    per_step = torch.nn.functional.binary_cross_entropy_with_logits(
        out, y, reduction="none").sum(-1)
    by_hand = sum(per_step[i, :n].sum() for i, n in enumerate(lengths.tolist())) / 3
    assert float(objective.detach()) == pytest.approx(float(by_hand.detach()), rel=1e-5)
    step_mean = mean_module.training_step(batch, 0)
    assert float(step_mean.detach()) == pytest.approx(float(by_hand.detach()) * 3 / 14, rel=1e-5)
    # The logged training loss is the per-step mean under either objective.
    assert float(sum_module.train_loss.compute()) == pytest.approx(float(step_mean.detach()),
                                                                  rel=1e-5)
    # Gradients scale by the real steps per sequence (14 / 3).
    objective.backward()
    step_mean.backward()
    for a, b in zip(sum_module.net.parameters(), mean_module.net.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad * 14 / 3, rtol=1e-4, atol=1e-7)


def test_a_sequence_level_task_is_the_same_under_either_objective():
    spec = TaskSpec(input_size=3, output_size=1, loss="mse", variable_length=True)
    x, _, lengths = _batch()
    y = torch.randn(3)
    losses = []
    for objective in ("step_mean", "sequence_sum"):
        torch.manual_seed(0)
        net = SequenceModel(CELL, spec, hidden_size=8, num_layers=1, dropout=0.0)
        module = RecurrentLitModule(net, optimizer=torch.optim.SGD, train_objective=objective)
        losses.append(float(module.training_step((x, y, lengths), 0).detach()))
    assert losses[0] == losses[1]


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.95])
def test_rescaled_sgd_is_nesterov_sgd_with_the_step_times_one_minus_momentum(momentum):
    torch.manual_seed(0)
    w0 = torch.randn(5)
    mine, ref = w0.clone().requires_grad_(), w0.clone().requires_grad_()
    opt = RescaledMomentumSGD([mine], lr=0.1, momentum=momentum)
    ref_opt = torch.optim.SGD([ref], lr=0.1 * (1 - momentum), momentum=momentum,
                              nesterov=momentum > 0)
    for k in range(4):
        for p, o in ((mine, opt), (ref, ref_opt)):
            o.zero_grad()
            ((p - k) ** 2).sum().backward()
            o.step()
    assert torch.equal(mine, ref)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - momentum))
    with pytest.raises(ValueError, match="momentum"):
        RescaledMomentumSGD([mine], lr=0.1, momentum=1.0)


def test_bad_objectives_are_refused_naming_the_key(typed):
    assert typed("model.train_objective=sequence_sum").model.train_objective == "sequence_sum"
    with pytest.raises(ConfigError, match="model.train_objective"):
        typed("model.train_objective=sum")
    with pytest.raises(ConfigError, match="data.loss_weighting=string"):
        typed("data=anbn", "data.loss_weighting=string", "model.train_objective=sequence_sum")
