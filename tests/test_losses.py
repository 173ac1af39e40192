"""The loss kinds (rnnsweep.losses) against the formulas they stand for, computed here by
hand: the loss over items with and without per-item weights, the hits, the trivial predictor,
frame accuracy and the headline each kind leads with."""

from __future__ import annotations

import math

import pytest
import torch

from rnnsweep.data.spec import TaskSpec
from rnnsweep.losses import LOSS_KINDS, FrameAccuracy, loss_kind

GEN = torch.Generator().manual_seed(0)


def test_mean_squared_error_is_the_mean_over_items_and_weights_weigh_items():
    kind = loss_kind("mse")
    spec = TaskSpec(input_size=1, output_size=2, loss="mse", acc_tolerance=0.5)
    y = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    out = torch.tensor([[0.1, 0.2], [1.0, 2.0], [2.0, 2.4]])
    per_item = [(0.01 + 0.04) / 2, (0 + 1) / 2, (0 + 0.16) / 2]
    assert kind.loss(out, y).item() == pytest.approx(sum(per_item) / 3)
    w = torch.tensor([0.5, 0.25, 0.25])
    assert kind.loss(out, y, w).item() == pytest.approx(
        0.5 * per_item[0] + 0.25 * per_item[1] + 0.25 * per_item[2])
    # A hit: every output within the tolerance.
    assert kind.hits(out, y, spec).tolist() == [1.0, 0.0, 1.0]
    # prepare() gives the outputs the target's shape ((N, 1) outputs, (N,) targets).
    assert kind.prepare(torch.zeros(3, 1), torch.zeros(3)).shape == (3,)


def test_multi_label_loss_sums_over_outputs_and_averages_over_steps():
    kind = loss_kind("bce")
    spec = TaskSpec(input_size=1, output_size=2, loss="bce")
    out = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])

    def nll(logit: float, target: float) -> float:
        p = 1 / (1 + math.exp(-logit))
        return -(target * math.log(p) + (1 - target) * math.log(1 - p))

    steps = [nll(2, 1) + nll(-1, 0), nll(0.5, 0) + nll(0.5, 1)]
    assert kind.loss(out, y).item() == pytest.approx(sum(steps) / 2)
    assert kind.hits(out, y, spec).tolist() == [1.0, 0.0]


def test_cross_entropy_and_its_trivial_predictor_the_class_prior():
    kind = loss_kind("ce")
    spec = TaskSpec(input_size=1, output_size=3, loss="ce")
    out = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    y = torch.tensor([0, 1])
    manual = [-math.log(math.exp(2) / (math.exp(2) + 2)),
              -math.log(1 / (2 + math.e))]
    assert kind.loss(out, y).item() == pytest.approx(sum(manual) / 2)
    assert kind.hits(out, y, spec).tolist() == [1.0, 0.0]
    loss, acc = kind.trivial(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1]), spec)
    # prior 0.75 / 0.25 / 0 (clamped to 1e-6): -(log 0.75 + log 0.25) / 2; majority class 0.
    assert loss == pytest.approx(-(math.log(0.75) + math.log(0.25)) / 2, rel=1e-5)
    assert acc == 0.5


def test_the_trivial_regression_predictor_is_the_training_mean():
    spec = TaskSpec(input_size=1, output_size=1, loss="mse", acc_tolerance=0.04)
    loss, acc = loss_kind("mse").trivial(torch.tensor([[1.0], [3.0]]),
                                         torch.tensor([[2.0], [2.5]]), spec)
    assert loss == pytest.approx((0 + 0.25) / 2)
    assert acc == 0.5


def test_frame_accuracy_counts_true_positives_over_every_mistake():
    metric = FrameAccuracy()
    metric.update(torch.tensor([[1.0, -1.0, 1.0]]), torch.tensor([[1.0, 1.0, 0.0]]))
    assert metric.compute().item() == pytest.approx(1 / 3)  # 1 TP, 1 FN, 1 FP
    empty = FrameAccuracy()
    empty.update(torch.tensor([[-1.0, -1.0]]), torch.tensor([[0.0, 0.0]]))
    assert empty.compute().item() == 1.0  # nothing sounding and nothing predicted


def test_every_kind_names_its_metrics_and_headline_and_draws_its_targets():
    spec = TaskSpec(input_size=1, output_size=4, loss="ce")
    assert loss_kind("ce").metric_names("val") == ("val_loss", "val_acc")
    assert loss_kind("mse").metric_names("test") == ("test_loss", "test_acc", "test_mse")
    assert loss_kind("bce").metric_names("val")[-1] == "val_frame_acc"
    assert {k: v.headline for k, v in LOSS_KINDS.items()} == {
        "mse": "test_loss", "bce": "test_loss", "ce": "test_acc"}
    assert loss_kind("ce").headline_maximized and not loss_kind("mse").headline_maximized
    y = loss_kind("ce").random_target((5, 2), spec, GEN)
    assert y.shape == (5, 2) and y.dtype == torch.long and int(y.max()) < 4
    assert set(loss_kind("bce").random_target((3,), spec, GEN).unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="unknown loss kind 'hinge' \\(allowed: mse, bce, ce\\)"):
        loss_kind("hinge")
