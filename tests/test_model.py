import pytest
import torch

from rnnsweep.cells import recurrent_parameters
from rnnsweep.data.spec import TaskSpec
from rnnsweep.errors import ConfigError
from rnnsweep.model import (
    SequenceModel,
    count_parameters,
    hidden_size_for_budget,
    total_parameters,
)
from rnnsweep.targets import check_target

# A cell known by its config only, as a cell of one's own is (conf/cell/mingru.yaml).
MINGRU = {"name": "mingru", "_target_": "rnnsweep.cells.mingru.MinGRU"}

CELL_TARGETS = {"lstm": "rnnsweep.cells.LSTM", "gru": "rnnsweep.cells.GRU",
                "rnn": "rnnsweep.cells.RNN"}


def cell(name: str, **keys) -> dict:
    """A cell config as conf/cell/<name>.yaml gives it."""
    return {"name": name, "_target_": CELL_TARGETS[name], **keys}

SPEC = TaskSpec(input_size=2, output_size=1, loss="mse")
STEP_SPEC = TaskSpec(input_size=3, output_size=3, loss="bce", per_step=True)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", MINGRU])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_output_shapes(cell, layers):
    x = torch.randn(5, 11, 2)
    assert SequenceModel(cell, SPEC, 8, layers, 0.1)(x).shape == (5, 1)
    x3 = torch.randn(5, 11, 3)
    assert SequenceModel(cell, STEP_SPEC, 8, layers)(x3).shape == (5, 11, 3)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("hidden", [16, 37, 256])
def test_parameter_counts_match_pytorch_and_gru_is_three_quarters_of_lstm(layers, hidden):
    counts = {}
    for cell in ("rnn", "lstm", "gru"):
        rnn = SequenceModel(cell, SPEC, hidden, layers).rnn
        counts[cell] = count_parameters(rnn)
        assert counts[cell] == recurrent_parameters(cell, 2, hidden, layers)
    assert counts["gru"] * 4 == counts["lstm"] * 3
    assert counts["rnn"] * 4 == counts["lstm"]


def test_total_parameters_includes_head():
    m = SequenceModel("gru", SPEC, 20, 2)
    assert count_parameters(m) == total_parameters("gru", SPEC, 20, 2)


@pytest.mark.parametrize(("cell", "key"), [("lstm", "forget_bias"), ("gru", "update_bias")])
def test_gate_bias_sets_block_one_of_every_layer(cell, key):
    def cell_config(name, k, v):
        return {"name": name, "_target_": CELL_TARGETS[name], k: v}

    for value in (1.0, 0.0, 2.5):
        rnn = SequenceModel(cell_config(cell, key, value), SPEC, 6, 2).rnn
        for layer in range(2):
            total = getattr(rnn, f"bias_ih_l{layer}") + getattr(rnn, f"bias_hh_l{layer}")
            assert torch.allclose(total[6:12], torch.full((6,), value))
            # the other gates keep PyTorch's initialisation
            assert not torch.allclose(total[:6], torch.full((6,), value))


def test_gate_bias_none_keeps_pytorch_default():
    torch.manual_seed(3)
    a = SequenceModel(cell("gru", update_bias=None), SPEC, 6, 1).rnn
    torch.manual_seed(3)
    b = torch.nn.GRU(2, 6, 1, batch_first=True)
    assert torch.equal(a.bias_ih_l0, b.bias_ih_l0)


@pytest.mark.parametrize(("cell", "key"), [("gru", "forget_bias"), ("rnn", "forget_bias"),
                                           ("lstm", "update_bias"), ("rnn", "update_bias")])
def test_gate_bias_a_cell_cannot_use_is_refused(cell, key):
    node = {"name": cell, "_target_": CELL_TARGETS[cell], key: 1.0}
    with pytest.raises(ConfigError, match=f"cell.{key} is invalid for {CELL_TARGETS[cell]}: "
                                          "allowed: "):
        check_target("cell", node, torch.nn.Module,
                     passed=("input_size", "hidden_size", "num_layers", "dropout"))


def test_mingru_equals_its_sequential_recurrence():
    """The log-space scan computes h_t = (1 - z_t) h_{t-1} + z_t g(W_h x_t) from h_0 = 0."""
    torch.manual_seed(0)
    net = SequenceModel(MINGRU, SPEC, 5, 1)
    x = torch.randn(3, 9, 2)
    k, h_tilde = net.rnn.layers[0].to_gate_and_hidden(x).chunk(2, dim=-1)
    z = torch.sigmoid(k)
    g = torch.where(h_tilde >= 0, h_tilde + 0.5, torch.sigmoid(h_tilde))
    h, states = torch.zeros(3, 5), []
    for t in range(9):
        h = (1 - z[:, t]) * h + z[:, t] * g[:, t]
        states.append(h)
    out, _ = net.rnn(x)
    assert torch.allclose(out, torch.stack(states, 1), atol=1e-5)
    assert count_parameters(net.rnn) == recurrent_parameters(MINGRU, 2, 5, 1) == 2 * 5 * 3


@pytest.mark.parametrize("cell_name", ["lstm", "gru", MINGRU])
def test_param_budget_bisection_finds_the_closest_hidden_size(cell_name):
    budget = 7_000
    h = hidden_size_for_budget(cell_name, SPEC, budget, 2)
    best = min(range(1, 400), key=lambda k: abs(total_parameters(cell_name, SPEC, k, 2) - budget))
    assert abs(total_parameters(cell_name, SPEC, h, 2) - budget) == \
        abs(total_parameters(cell_name, SPEC, best, 2) - budget)


def test_param_budget_gives_matched_hidden_sizes():
    budget = 20_000
    h_lstm = hidden_size_for_budget("lstm", SPEC, budget, 1)
    h_gru = hidden_size_for_budget("gru", SPEC, budget, 1)
    for cell, h in (("lstm", h_lstm), ("gru", h_gru)):
        assert abs(total_parameters(cell, SPEC, h, 1) - budget) / budget < 0.02
    assert 1.1 < h_gru / h_lstm < 1.2  # ~sqrt(4/3) = 1.15: 3 vs 4 gate blocks


def test_padding_does_not_change_outputs_of_variable_length_batches():
    spec = TaskSpec(input_size=2, output_size=1, loss="mse", variable_length=True)
    torch.manual_seed(0)
    model = SequenceModel("lstm", spec, 8, 2).eval()
    seq = torch.randn(1, 7, 2)
    short = torch.cat([seq, torch.zeros(1, 3, 2)], 1)
    long = torch.cat([seq, torch.randn(1, 9, 2)], 1)  # garbage beyond the length
    lengths = torch.tensor([7])
    assert torch.allclose(model(short, lengths), model(long, lengths), atol=1e-6)


def test_counts_of_sizes_too_large_to_build_come_from_the_exact_quadratic():
    """The memory preflight asks about hidden sizes no tensor can describe."""
    h = 1_000_000_000
    assert recurrent_parameters("lstm", 2, h, 1) == 4 * (h * (2 + h) + 2 * h)
    assert recurrent_parameters(MINGRU, 2, h, 2) == 2 * h * 2 + 2 * h + 2 * h * h + 2 * h
