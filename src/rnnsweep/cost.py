"""Cost probe: what one training step of each cell costs, measured under control.

Seconds per epoch of trials run minutes apart compare the machine's load at two moments,
not two cells. The probe instead builds the real model (rnnsweep.model.SequenceModel) and
a training step like the Trainer's (the task's loss as RecurrentLitModule computes it,
backward, gradient clipping, Adam) for every cell at identical sizes in this one process,
and times them interleaved in rounds: round r runs each cell for `steps_per_round` steps,
in an order rotated every round, so a change of load hits every cell alike and cancels in
the per-round ratio. A cell's figure for a round is its fastest single step of the round
(interference only adds time). Warm-up steps (allocator, oneDNN primitive creation, Adam
state) are run first and never timed.

Timer: on CPU the CPU time of the calling thread (`time.thread_time`) at one torch thread,
which a competing process does not inflate the way it inflates wall time (two CPU-burning
processes on the 2-core dev machine doubled wall time but moved the GRU/LSTM ratio by 1-15 %
at H=32 and 4-7 % at H=128 x 2 layers: contention still slows the kernels unequally); with
more threads, `time.process_time` (OpenMP spin-waits then count, so keep one thread). On CUDA:
CUDA events around the steps, read after a synchronise.

Ratio interval: per round, ratio = (seconds/step of cell) / (seconds/step of LSTM); the
figure is the median ratio over rounds with the distribution-free order-statistic interval
for a median (scipy.stats.quantile_test): it assumes only that rounds are independent, not
that their ratios are normal. Interference only adds time, and a round the fastest-of-steps
did not clean gives one large ratio on either side (seen here: a 40 ms round among 32-35 ms
ones), which a t interval on the mean log ratio turned into 0.86-1.11 where the median's
interval was 0.88-0.995. Rounds are the unit: each holds one paired measurement; fewer than
about 9 rounds give no finite interval at 99 %.

Two kernel modes, timed in the same rounds (round r runs every (mode, cell) pair, rotated):
- as run (AS_RUN): the kernels training runs on this machine: on a CPU oneDNN's fused LSTM
  and rnnsweep's fused GRU / tanh RNN (rnnsweep.cells.fast_gru), cuDNN on a GPU;
- on equal kernels (EQUAL): oneDNN and cuDNN off and the GRU / tanh RNN built with
  kernel=torch, so every built-in cell runs ATen's generic per-step loop (the same ops per
  step: a gate matmul, the gates' pointwise maths; torch's CPU GRU has no oneDNN path, so
  no fused pairing exists). Its ratio is about the cells; the as-run one about this build.
The kernel each ran is read from its own graph (rnnsweep.measure.rnn_backend). Memory per
step (rnnsweep.cost_memory, which also holds the modes): parameters + gradients + Adam
state + activations, and a fused kernel's workspace apart (none on equal kernels).

FLOPs per training step (analytic, see `flops_per_step`): forward per time step and layer
2*G*H*(I+H) for the gate matrix products plus 2*G*H for the two bias vectors (G = 1, 4, 3
gate blocks for rnn, lstm, gru), plus the head 2*H*O (+O bias); backward counted as twice
the forward, so a step is 3 x forward x batch. Element-wise gate maths (O(H) per step
against O(H^2)) is left out.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from scipy import stats

from rnnsweep.cells import CellSpec, cell_name, recurrent_flops
from rnnsweep.cost_memory import (
    AS_RUN,
    EQUAL,
    MODE_TEXT,
    Memory,
    equal_kernel_cell,
    kernel_mode,
    measure_memory,
    unit_label,
)
from rnnsweep.cost_step import Size, StepTimer, TrainingStep, example_batch
from rnnsweep.data.spec import TaskSpec
from rnnsweep.measure import rnn_backend
from rnnsweep.model import count_parameters

# What `RatioInterval` holds, as saved beside the figures.
RATIO_INTERVAL = "median, order-statistic interval"


@dataclass
class RatioInterval:
    """Median ratio over rounds with its order-statistic interval (module doc)."""

    estimate: float
    low: float
    high: float
    n_rounds: int
    level: float
    p_value: float = math.nan  # two-sided sign test of a median ratio of 1

    def excludes_one(self) -> bool:
        return self.high < 1 or self.low > 1

    def text(self) -> str:
        # Two decimals: a Holm-adjusted level such as 99.58 % must not print as 100 %.
        level = f"{100 * self.level:.2f}".rstrip("0").rstrip(".")
        return (f"{self.estimate:.3g} (median; {level}% order-statistic interval over "
                f"{self.n_rounds} rounds {self.low:.3g}-{self.high:.3g})")


@dataclass
class CellCost:
    cell: str
    n_params: int
    flops: float
    kernel: str
    memory: Memory
    seconds: list[float]  # per round: the fastest training step's seconds

    def spread(self) -> dict[str, float]:
        xs = sorted(self.seconds)
        q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
        return {"median": statistics.median(xs), "q1": q[0], "q3": q[2],
                "min": xs[0], "max": xs[-1]}


@dataclass
class SizeCost:
    """One size's figures: `cells` / `ratios` as run, `equal_cells` / `equal_ratios` on
    equal kernels (empty when that mode was not probed)."""

    size: Size
    cells: dict[str, CellCost]
    ratios: dict[str, RatioInterval]  # "gru/lstm", "rnn/lstm" (over the first cell): time
    order: list[list[str]]  # the interleaved order each round ran (unit_label)
    equal_cells: dict[str, CellCost] = field(default_factory=dict)
    equal_ratios: dict[str, RatioInterval] = field(default_factory=dict)

    def mode(self, mode: str) -> tuple[dict[str, CellCost], dict[str, RatioInterval]]:
        """(cells, ratios) of AS_RUN or EQUAL."""
        if mode == AS_RUN:
            return self.cells, self.ratios
        if mode == EQUAL:
            return self.equal_cells, self.equal_ratios
        raise ValueError(f"mode={mode!r} is invalid: allowed: {AS_RUN}, {EQUAL}")


@dataclass
class ProbeResult:
    device: str
    timer: str
    threads: int
    batch_size: int
    seq_len: int
    warmup_steps: int
    steps_per_round: int
    sizes: list[SizeCost] = field(default_factory=list)
    cpu_seconds: float = 0.0

    @property
    def modes(self) -> list[str]:
        equal = bool(self.sizes) and all(s.equal_cells for s in self.sizes)
        return [AS_RUN, EQUAL] if equal else [AS_RUN]


def flops_per_step(cell: CellSpec, spec: TaskSpec, batch_size: int, seq_len: int,
                   hidden_size: int, num_layers: int) -> float:
    """Analytic FLOPs of one training step (forward + backward = 3 x forward); module doc.
    Per time step the cell costs a multiply-add per weight-matrix entry and an add per
    bias (rnnsweep.cells.recurrent_flops); the head as many for its calls."""
    per_time_step = recurrent_flops(cell, spec.input_size, hidden_size, num_layers)
    head_calls = seq_len if spec.per_step else 1
    head = head_calls * (2 * hidden_size * spec.output_size + spec.output_size)
    return 3.0 * batch_size * (seq_len * per_time_step + head)


def interleaved_order(cells: Sequence[str], rounds: int) -> list[list[str]]:
    """Round r runs the cells rotated by r: each cell takes each position equally often,
    so a drift within a round (cache, frequency) favours no cell."""
    n = len(cells)
    return [[cells[(r + i) % n] for i in range(n)] for r in range(rounds)]


def log_ratio_interval(num: Sequence[float], den: Sequence[float],
                       level: float = 0.95) -> RatioInterval:
    """Paired per-round ratios num/den: their median with the order-statistic interval
    and the sign test of ratio 1 (scipy.stats.quantile_test on the logs). Too few rounds
    for `level` give an unbounded interval (0, inf), which decides nothing."""
    logs = [math.log(a / b) for a, b in zip(num, den, strict=True)]
    n = len(logs)
    median = statistics.median(logs)
    if n < 2:
        return RatioInterval(math.exp(median), math.nan, math.nan, n, level)
    test = stats.quantile_test(logs, q=0.0, p=0.5)
    ci = test.confidence_interval(level)
    low = 0.0 if math.isnan(ci.low) else math.exp(ci.low)
    high = math.inf if math.isnan(ci.high) else math.exp(ci.high)
    return RatioInterval(math.exp(median), low, high, n, level, float(test.pvalue))


def probe(spec: TaskSpec, batch_size: int, seq_len: int, sizes: Sequence[Size],
          cells: Sequence[CellSpec] = ("lstm", "gru"), rounds: int = 10, steps_per_round: int = 3,
          warmup_steps: int = 3, device: str = "cpu", threads: int = 1, level: float = 0.95,
          budget_s: float | None = None, min_rounds: int = 5, seed: int = 0,
          equal_kernels: bool = True) -> ProbeResult:
    """Cost of each cell at each size, as run and (`equal_kernels`) on equal kernels, both
    modes in the same rounds (module doc). `budget_s` caps the probe's CPU seconds, warm-up
    and memory included, by cutting the timed rounds (never fewer than `min_rounds`); each
    size gets an equal share of what is left. Both modes share it: probing two cuts the
    rounds rather than doubling the time. A cell is a built-in name or a cell config
    (rnnsweep.cells); results are keyed by its name; `ratios` are over the first cell."""
    if not cells:
        raise ValueError("the probe needs at least one cell")
    dev = torch.device(device)
    saved_threads = torch.get_num_threads()
    started = time.process_time()
    torch.set_num_threads(threads)
    timer = StepTimer(dev, threads)
    result = ProbeResult(dev.type, timer.name, threads, batch_size, seq_len, warmup_steps,
                         steps_per_round)
    modes = [AS_RUN, EQUAL] if equal_kernels else [AS_RUN]
    try:
        batch = example_batch(spec, batch_size, seq_len, dev, seed)
        for i, size in enumerate(sizes):
            # What is left, shared by the sizes to come: a cheap size leaves its rest to them.
            per_size_budget = None if budget_s is None else (
                budget_s - (time.process_time() - started)) / (len(sizes) - i)
            result.sizes.append(_probe_size(spec, size, batch, dev, cells, modes, timer, rounds,
                                            steps_per_round, warmup_steps, level,
                                            per_size_budget, min_rounds, seed))
    finally:
        torch.set_num_threads(saved_threads)
    result.cpu_seconds = time.process_time() - started
    return result


def _probe_size(spec: TaskSpec, size: Size, batch: tuple[torch.Tensor, ...],
                dev: torch.device, specs: Sequence[CellSpec], modes: list[str], timer: StepTimer,
                rounds: int, steps_per_round: int, warmup_steps: int, level: float,
                budget_s: float | None, min_rounds: int, seed: int) -> SizeCost:
    started = time.process_time()
    # A unit is (mode, cell); equal seeds give every mode's model the same initial weights.
    steps = {(m, cell_name(c)): TrainingStep(c if m == AS_RUN else equal_kernel_cell(c), spec,
                                             size, batch, dev, seed=seed)
             for m in modes for c in specs}
    units = list(steps)
    warm: dict[tuple[str, str], float] = {}
    for _ in range(warmup_steps):  # interleaved too; these are never reported
        for u in units:
            with kernel_mode(u[0]):
                warm[u] = timer.seconds(steps[u])
    x = batch[0]
    memory, kernels = {}, {}
    for u in units:
        with kernel_mode(u[0]):
            memory[u] = measure_memory(steps[u])
            kernels[u] = rnn_backend(steps[u].net, x)
    if budget_s is not None and warm:
        per_round = sum(warm.values()) * steps_per_round
        left = budget_s - (time.process_time() - started)
        rounds = max(min_rounds, min(rounds, int(left / max(per_round, 1e-9))))
    by_label = {unit_label(*u): u for u in units}
    order = interleaved_order(list(by_label), rounds)
    seconds: dict[tuple[str, str], list[float]] = {u: [] for u in units}
    for round_units in order:
        for label in round_units:
            u = by_label[label]
            with kernel_mode(u[0]):
                seconds[u].append(timer.fastest(steps[u], steps_per_round))

    def mode_costs(m: str) -> tuple[dict[str, CellCost], dict[str, RatioInterval]]:
        cells = [c for mode, c in units if mode == m]
        costs = {c: CellCost(c, count_parameters(steps[m, c].net),
                             flops_per_step(steps[m, c].cell, spec, x.shape[0], x.shape[1],
                                            size.hidden_size, size.num_layers),
                             kernels[m, c], memory[m, c], seconds[m, c])
                 for c in cells}
        ref = cells[0]  # the first cell given: every ratio's denominator
        ratios = {f"{c}/{ref}": log_ratio_interval(seconds[m, c], seconds[m, ref], level)
                  for c in cells[1:]}
        return costs, ratios

    equal = mode_costs(EQUAL) if EQUAL in modes else ({}, {})
    return SizeCost(size, *mode_costs(AS_RUN), order, *equal)


def _mode_dict(cells: dict[str, CellCost], ratios: dict[str, RatioInterval]) -> dict[str, Any]:
    return {
        "cells": {c: {"n_params": v.n_params, "flops_per_step": v.flops, "kernel": v.kernel,
                      "seconds_per_step": v.spread(),
                      "memory_bytes": {**vars(v.memory), "total": v.memory.total}}
                  for c, v in cells.items()},
        "time_ratios": {k: {"estimate": r.estimate, "low": r.low, "high": r.high,
                            "n_rounds": r.n_rounds, "level": r.level, "p_value": r.p_value}
                        for k, r in ratios.items()},
    }


def as_dict(result: ProbeResult) -> dict[str, Any]:
    """JSON-ready figures (benchmark results, metrics.json): per size the as-run `cells` and
    `time_ratios`, and the same under `equal_kernels` when that mode was probed."""
    out: dict[str, Any] = {k: getattr(result, k) for k in (
        "device", "timer", "threads", "batch_size", "seq_len", "warmup_steps",
        "steps_per_round", "cpu_seconds")}
    out["modes"] = {m: MODE_TEXT[m] for m in result.modes}
    out["interval"] = RATIO_INTERVAL  # results saved before it held t intervals
    out["sizes"] = []
    for s in result.sizes:
        entry = {"hidden_size": s.size.hidden_size, "num_layers": s.size.num_layers,
                 **_mode_dict(s.cells, s.ratios)}
        if s.equal_cells:
            entry[EQUAL] = _mode_dict(s.equal_cells, s.equal_ratios)
        out["sizes"].append(entry)
    return out
