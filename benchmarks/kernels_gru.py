"""CPU time per training step: nn.LSTM, nn.GRU, rnnsweep's fused GRU (and tanh RNN, minGRU).

A step is what training does per batch: forward, a linear head on the last output, MSE
loss, backward and an Adam step. Times are CPU seconds of this process (time.process_time)
at one torch thread, so a busy shared machine changes them little; each variant is warmed
up, then timed in blocks of steps, the variants interleaved block by block (in a rotating
order) so that drift hits all alike. Per step: the median over blocks [min-max]; a ratio is
the median over rounds of the ratio within a round.

    .venv/bin/python -m benchmarks.kernels_gru [--reps 15] [--json PATH]

On a CPU torch runs nn.LSTM as one fused oneDNN kernel and nn.GRU as a loop of per-step
ATen cells; rnnsweep.cells.GRU (kernel=auto) runs rnnsweep.cells.fast_gru instead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import fmt_spread, machine, summary
from rnnsweep.cells import GRU, RNN
from rnnsweep.cells.mingru import MinGRU
from rnnsweep.measure import graph_backend

# (batch, steps, input, hidden, layers): the defaults, then a longer, wider input.
SHAPES = [(64, 20, 2, h, layers) for layers in (1, 2) for h in (16, 32, 64)] + [
    (64, 60, 8, 64, 1), (64, 60, 8, 64, 2)]
MINGRU_SHAPES = RNN_SHAPES = [(64, 20, 2, 64, 1), (64, 60, 8, 64, 1)]
BLOCK_CPU_S = 0.08  # CPU time of one timed block of steps


def train_step(rnn: nn.Module, x: torch.Tensor, y: torch.Tensor, hidden: int
               ) -> Callable[[], None]:
    head = nn.Linear(hidden, y.shape[-1])
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out, _ = rnn(x)
        F.mse_loss(head(out[:, -1]), y).backward()
        opt.step()
    return step


def graph_kernel(rnn: nn.Module, x: torch.Tensor) -> str:
    """The recurrent kernel family in the autograd graph of rnn(x), as training reports it."""
    return graph_backend(rnn(x)[0])


def interleaved(steps: dict[str, Callable[[], None]], reps: int) -> dict[str, list[float]]:
    """CPU seconds per step of each variant, `reps` blocks each, interleaved."""
    per_block: dict[str, int] = {}
    for name, step in steps.items():
        for _ in range(3):
            step()
        c0 = time.process_time()
        n = 0
        while time.process_time() - c0 < BLOCK_CPU_S / 4:
            step()
            n += 1
        per_block[name] = max(1, round(n * BLOCK_CPU_S / (time.process_time() - c0)))
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(reps):
        for name in names[r % len(names):] + names[: r % len(names)]:
            step, n = steps[name], per_block[name]
            c0 = time.process_time()
            for _ in range(n):
                step()
            times[name].append((time.process_time() - c0) / n)
    return times


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    return statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))


def measure_pair(shape: tuple[int, ...], reps: int, cell: str, torch_cls: type[nn.Module],
                 fused_cls: type[nn.Module]) -> dict[str, Any]:
    """nn.LSTM, torch's own `torch_cls` and rnnsweep's `fused_cls` with its C++ step loop
    (kernel=auto) and its Python loop (kernel=python) at one shape; keys nn_<cell>,
    fused_<cell> and pyloop_<cell>, with their ratios to the LSTM and to each other."""
    batch, steps, inp, hidden, layers = shape
    torch.manual_seed(0)
    x, y = torch.randn(batch, steps, inp), torch.randn(batch, 1)
    plain, fused, pyloop = f"nn_{cell}", f"fused_{cell}", f"pyloop_{cell}"
    cells = {"lstm": nn.LSTM(inp, hidden, layers, batch_first=True),
             plain: torch_cls(inp, hidden, layers, batch_first=True),
             fused: fused_cls(inp, hidden, layers, kernel="auto"),
             pyloop: fused_cls(inp, hidden, layers, kernel="python")}
    times = interleaved({k: train_step(m, x, y, hidden) for k, m in cells.items()}, reps)
    return {"shape": dict(zip(("batch", "steps", "input", "hidden", "layers"), shape,
                              strict=True)),
            "kernel": {k: graph_kernel(m, x) for k, m in cells.items()},
            "cpu_s_per_step": {k: summary(v) for k, v in times.items()},
            f"{fused}/lstm": ratio(times, fused, "lstm"),
            f"{pyloop}/lstm": ratio(times, pyloop, "lstm"),
            f"{plain}/lstm": ratio(times, plain, "lstm"),
            f"{plain}/{fused}": ratio(times, plain, fused)}


def measure_mingru(shape: tuple[int, ...], reps: int) -> dict[str, Any]:
    """minGRU (src/rnnsweep/cells/mingru.py) has only its parallel form: a log-space scan
    over all steps at once (cumsum, logcumsumexp); there is no sequential form to time."""
    batch, steps, inp, hidden, layers = shape
    torch.manual_seed(0)
    x, y = torch.randn(batch, steps, inp), torch.randn(batch, 1)
    cells = {"lstm": nn.LSTM(inp, hidden, layers, batch_first=True),
             "mingru_parallel": MinGRU(inp, hidden, layers)}
    times = interleaved({k: train_step(m, x, y, hidden) for k, m in cells.items()}, reps)
    return {"shape": dict(zip(("batch", "steps", "input", "hidden", "layers"), shape,
                              strict=True)),
            "cpu_s_per_step": {k: summary(v) for k, v in times.items()},
            "mingru_parallel/lstm": ratio(times, "mingru_parallel", "lstm")}


def ms(s: dict[str, float]) -> str:
    return fmt_spread({k: v * 1e3 for k, v in s.items()}, 3)


def run(reps: int = 15) -> dict[str, Any]:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        info = machine()
        result: dict[str, Any] = {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": info, "reps": reps, "threads": 1, "shapes": [], "rnn": [],
            "mingru": []}
        print(f"# GRU kernels, CPU ms per training step (fwd + bwd + Adam, 1 thread), "
              f"{result['date']}")
        print(f"# {info['cpu_model']}, {info['cpu_cores']} cores, torch {info['torch']}, "
              f"load at start {info['load_avg_at_start'][0]:.2f}; median [min-max] of "
              f"{reps} interleaved blocks")
        head = (f"{'B,T,F,H,L':<16} {'nn.LSTM':>22} {'nn.GRU':>22} {'fused, Python loop':>22} "
                f"{'fused, C++ loop':>22} {'C++/LSTM':>9} {'Py/LSTM':>8} {'nnGRU/LSTM':>10}")
        print(head)
        for shape in SHAPES:
            row = measure_pair(shape, reps, "gru", nn.GRU, GRU)
            result["shapes"].append(row)
            t = row["cpu_s_per_step"]
            print(f"{','.join(map(str, shape)):<16} {ms(t['lstm']):>22} {ms(t['nn_gru']):>22} "
                  f"{ms(t['pyloop_gru']):>22} {ms(t['fused_gru']):>22} "
                  f"{row['fused_gru/lstm']:>9.2f} {row['pyloop_gru/lstm']:>8.2f} "
                  f"{row['nn_gru/lstm']:>10.2f}", flush=True)
        kernels = result["shapes"][0]["kernel"]
        print(f"# kernels: nn.LSTM {kernels['lstm']}; nn.GRU {kernels['nn_gru']}; "
              f"{kernels['pyloop_gru']}; {kernels['fused_gru']}")
        fused = [r["fused_gru/lstm"] for r in result["shapes"]]
        for target in (0.8, 1.0):
            print(f"# fused GRU <= {target}x LSTM: {sum(f <= target for f in fused)} of "
                  f"{len(fused)} shapes")
        print("\n# tanh RNN: nn.RNN (ATen per-step ops) and rnnsweep's fused one")
        print(f"{'B,T,F,H,L':<16} {'nn.LSTM':>22} {'nn.RNN':>22} {'fused, Python loop':>22} "
              f"{'fused, C++ loop':>22} {'C++/LSTM':>9} {'Py/LSTM':>8} {'nnRNN/LSTM':>10}")
        for shape in RNN_SHAPES:
            row = measure_pair(shape, reps, "rnn", nn.RNN, RNN)
            result["rnn"].append(row)
            t = row["cpu_s_per_step"]
            print(f"{','.join(map(str, shape)):<16} {ms(t['lstm']):>22} {ms(t['nn_rnn']):>22} "
                  f"{ms(t['pyloop_rnn']):>22} {ms(t['fused_rnn']):>22} "
                  f"{row['fused_rnn/lstm']:>9.2f} {row['pyloop_rnn/lstm']:>8.2f} "
                  f"{row['nn_rnn/lstm']:>10.2f}", flush=True)
        print("\n# minGRU (src/rnnsweep/cells/mingru.py): only a parallel form exists (log-space "
              "scan over all steps); no sequential form to time")
        print(f"{'B,T,F,H,L':<16} {'nn.LSTM':>22} {'minGRU parallel':>22} {'minGRU/LSTM':>11}")
        for shape in MINGRU_SHAPES:
            row = measure_mingru(shape, reps)
            result["mingru"].append(row)
            t = row["cpu_s_per_step"]
            print(f"{','.join(map(str, shape)):<16} {ms(t['lstm']):>22} "
                  f"{ms(t['mingru_parallel']):>22} {row['mingru_parallel/lstm']:>11.2f}",
                  flush=True)
        return result
    finally:
        torch.set_num_threads(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="interleaved blocks per variant")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(args.reps)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
