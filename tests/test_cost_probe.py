"""The cost probe: interleaving, FLOPs formula, memory accounting, ratio interval, and a
verdict that a CPU-burning neighbour does not change."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest
import torch
from scipy import stats

from rnnsweep.cost import (
    STEP_COUNTER_BYTES,
    Size,
    TrainingStep,
    example_batch,
    flops_per_step,
    interleaved_order,
    log_ratio_interval,
    measure_memory,
    probe,
)
from rnnsweep.data.base import TaskSpec
from rnnsweep.model import total_parameters

CPU = torch.device("cpu")
ADDING = TaskSpec(input_size=2, output_size=1, loss="mse")


def test_interleaving_rotates_cells_every_round():
    order = interleaved_order(["lstm", "gru", "rnn"], 6)
    assert order[:3] == [["lstm", "gru", "rnn"], ["gru", "rnn", "lstm"], ["rnn", "lstm", "gru"]]
    # Every cell runs once per round and holds each position equally often.
    assert all(sorted(r) == ["gru", "lstm", "rnn"] for r in order)
    for pos in range(3):
        assert sorted(r[pos] for r in order) == ["gru", "gru", "lstm", "lstm", "rnn", "rnn"]


def test_probe_records_the_order_it_ran():
    result = probe(ADDING, 4, 5, [Size(4, 1)], rounds=4, steps_per_round=1, warmup_steps=1)
    s = result.sizes[0]
    assert s.order == [["lstm", "gru"], ["gru", "lstm"], ["lstm", "gru"], ["gru", "lstm"]]
    assert all(len(c.seconds) == 4 for c in s.cells.values())
    assert s.ratios["gru/lstm"].n_rounds == 4


def test_flops_match_hand_computed_numbers():
    # LSTM, I=2, H=2, O=1, B=1, T=1: gates 2*4*2*(2+2)=64 + biases 2*4*2=16; head 2*2*1+1=5.
    assert flops_per_step("lstm", ADDING, 1, 1, 2, 1) == 3 * (64 + 16 + 5)
    # GRU: 2*3*2*4=48 + 12 + 5.
    assert flops_per_step("gru", ADDING, 1, 1, 2, 1) == 3 * (48 + 12 + 5)
    # tanh RNN, two layers, B=3, T=10: layer 1 2*1*2*4+4=20, layer 2 (I=H=2) 20; head once.
    assert flops_per_step("rnn", ADDING, 3, 10, 2, 2) == 3 * 3 * (10 * 40 + 5)
    # Per-step task: the head runs at every step.
    per_step = TaskSpec(input_size=2, output_size=1, loss="mse", per_step=True)
    assert flops_per_step("rnn", per_step, 1, 10, 2, 1) == 3 * (10 * 20 + 10 * 5)
    # Gate matrices dominate at large H: GRU/LSTM tends to the structural 3/4.
    ratio = flops_per_step("gru", ADDING, 64, 50, 512, 2) / flops_per_step(
        "lstm", ADDING, 64, 50, 512, 2)
    assert 0.749 < ratio < 0.751


def _saved_bytes(step: TrainingStep) -> int:
    """Independent count: unique storages saved for backward in one step, minus weights."""
    params = {p.untyped_storage().data_ptr() for p in step.net.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            saved[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        x, y, lengths = step.batch
        out = step.net(x, lengths)
        loss = torch.nn.functional.mse_loss(out.reshape(y.shape), y)
    loss.backward()
    step.optimizer.zero_grad(set_to_none=True)
    return sum(saved.values())


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_memory_is_params_grads_adam_and_activations(cell):
    size = Size(hidden_size=5, num_layers=2)
    step = TrainingStep(cell, ADDING, size, example_batch(ADDING, 4, 6, CPU), CPU)
    step()  # Adam state exists after the first step
    m = measure_memory(step)
    n = total_parameters(cell, ADDING, 5, 2)
    n_tensors = len(list(step.net.parameters()))
    assert m.params == 4 * n
    assert m.grads == 4 * n
    assert m.optimizer == 2 * 4 * n + STEP_COUNTER_BYTES * n_tensors  # exp_avg, exp_avg_sq
    assert m.activations == _saved_bytes(step) > 0
    assert m.total == m.params + m.grads + m.optimizer + m.activations


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_activation_bytes_scale_with_batch(cell):
    def acts(batch: int) -> int:
        step = TrainingStep(cell, ADDING, Size(5, 1), example_batch(ADDING, batch, 6, CPU), CPU)
        step()
        return measure_memory(step).activations

    assert acts(8) == 2 * acts(4)


@pytest.mark.parametrize("spec", [
    TaskSpec(input_size=3, output_size=3, loss="bce", per_step=True, variable_length=True),
    TaskSpec(input_size=4, output_size=5, loss="ce"),
])
def test_probe_runs_every_loss_kind(spec):
    result = probe(spec, 4, 6, [Size(8, 1)], cells=("lstm", "gru", "rnn"), rounds=3,
                   steps_per_round=1, warmup_steps=1)
    s = result.sizes[0]
    assert set(s.cells) == {"lstm", "gru", "rnn"}
    assert set(s.ratios) == {"gru/lstm", "rnn/lstm"}
    assert all(min(c.seconds) > 0 for c in s.cells.values())


def test_log_ratio_interval_is_a_t_interval_on_log_ratios():
    num, den = [2.0, 3.0, 2.5, 2.2], [1.0, 1.0, 1.0, 1.0]
    r = log_ratio_interval(num, den, level=0.9)
    logs = [math.log(v) for v in num]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / 3)
    half = stats.t.ppf(0.95, 3) * sd / 2
    assert r.estimate == pytest.approx(math.exp(mean))
    assert r.low == pytest.approx(math.exp(mean - half))
    assert r.high == pytest.approx(math.exp(mean + half))
    assert r.excludes_one()
    assert not log_ratio_interval([1.1, 0.9, 1.0], [1.0, 1.0, 1.0]).excludes_one()


def _verdict(low: float, high: float) -> str:
    return "faster" if high < 1 else "slower" if low > 1 else "inconclusive"


def test_verdict_holds_with_a_cpu_burning_neighbour():
    """Interleaved CPU-time ratios: the same verdict, and a ratio within 30 %, under load.

    Measured on the 2-core dev machine (H=32, T=50, B=32, 12 rounds, two burners, other
    agents' jobs beside): GRU/LSTM 2.8-3.3 quiet, 2.6-2.9 loaded while wall time doubled;
    the loaded ratio came out 4-17 % lower (contention slows the fused LSTM kernel a little
    more than GRU's per-step loop), so the 95 % intervals do not always overlap; 30 % is
    about twice the largest shift seen in 20 pairs.
    """
    def run() -> tuple[float, float, float]:
        r = probe(ADDING, 32, 50, [Size(32, 1)], rounds=12, steps_per_round=2).sizes[0]
        g = r.ratios["gru/lstm"]
        return g.estimate, g.low, g.high

    quiet = run()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(2)]  # one per core of the 2-core CI machine
    try:
        time.sleep(0.3)  # let them reach full speed
        loaded = run()
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert _verdict(*quiet[1:]) == _verdict(*loaded[1:]), (quiet, loaded)
    assert _verdict(*quiet[1:]) != "inconclusive", quiet  # else the test would prove nothing
    assert abs(math.log(loaded[0] / quiet[0])) < math.log(1.3), (quiet, loaded)
