"""Cost probe (report claims 2-3): per-cell time, memory and FLOPs per training step.

The same probe the report runs (rnnsweep.cost): LSTM, GRU and tanh RNN at identical sizes
on the default adding task's shapes, timed interleaved in one process (thread CPU time at
one torch thread), warm-up excluded, in both kernel modes: as run (this machine's kernels)
and on equal kernels (ATen's per-step loop for every cell). With `under_load`, the probe
runs a second time beside one CPU-burning process per core, to show how far load moves the
ratios.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import machine
from rnnsweep.cost import ProbeResult, Size, as_dict, probe
from rnnsweep.cost_memory import MODE_TEXT
from rnnsweep.data.spec import TaskSpec

ADDING = TaskSpec(input_size=2, output_size=1, loss="mse")
SIZES = (Size(32, 1), Size(64, 1), Size(128, 2))


def table(result: ProbeResult) -> str:
    """Plain-text figures per size, kernel mode and cell, with the time ratios."""
    lines = [f"cost probe: {result.device}, {result.timer}, {result.threads} thread(s), "
             f"batch {result.batch_size} x T={result.seq_len}, {result.warmup_steps} warm-up "
             f"steps, {result.steps_per_round} steps per unit per round, "
             f"{result.cpu_seconds:.1f} CPU s"]
    for s in result.sizes:
        for mode in result.modes:
            cells, ratios = s.mode(mode)
            lines.append(f"  {s.size.label()} on {MODE_TEXT[mode]}:")
            for c, v in cells.items():
                sp, m = v.spread(), v.memory
                lines.append(
                    f"    {c:4s} {1e3 * sp['median']:7.2f} ms/step [q1 {1e3 * sp['q1']:.2f}, "
                    f"q3 {1e3 * sp['q3']:.2f}] {v.flops / 1e6:7.1f} MFLOP {v.n_params:7d} "
                    f"params, {m.total / 2**20:6.2f} MiB = params {m.params / 2**20:.3f} + "
                    f"grads {m.grads / 2**20:.3f} + Adam {m.optimizer / 2**20:.3f} + "
                    f"activations {m.activations / 2**20:.2f} + workspace "
                    f"{m.workspace / 2**20:.2f}; {v.kernel}")
            for k, r in ratios.items():
                num = cells[k.split("/")[0]].memory.total / cells["lstm"].memory.total
                lines.append(f"    time {k}: {r.text()}; memory {k}: {num:.3g}")
    return "\n".join(lines)


def _burners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def run(rounds: int = 20, sizes: Sequence[Size] = SIZES, batch: int = 64, seq_len: int = 50,
        under_load: bool = True) -> dict[str, Any]:
    m = machine()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {m['cpu_model']}, "
          f"{m['cpu_cores']} cores, torch {m['torch']}", flush=True)
    kwargs = dict(cells=("lstm", "gru", "rnn"), rounds=rounds, steps_per_round=3)
    quiet = probe(ADDING, batch, seq_len, list(sizes), **kwargs)
    print("quiet machine:\n" + table(quiet), flush=True)
    section: dict[str, Any] = {"quiet": as_dict(quiet)}
    if under_load:
        burners = _burners(os.cpu_count() or 1)
        try:
            time.sleep(0.3)
            loaded = probe(ADDING, batch, seq_len, list(sizes), **kwargs)
        finally:
            for b in burners:
                b.kill()
                b.wait()
        print(f"beside {len(burners)} CPU-burning processes:\n" + table(loaded), flush=True)
        section["loaded"] = as_dict(loaded)
    return section


def _ratio_text(r: dict[str, Any]) -> str:
    return f"{r['estimate']:.3g} [{r['low']:.3g}–{r['high']:.3g}]"


def _mode_text(mode: dict[str, Any]) -> str:
    """GRU/LSTM time interval, memory ratio and kernels of one kernel mode."""
    cells = mode["cells"]
    mem = cells["gru"]["memory_bytes"]["total"] / cells["lstm"]["memory_bytes"]["total"]
    return (f"{_ratio_text(mode['time_ratios']['gru/lstm'])}, memory {mem:.3g} "
            f"(LSTM {cells['lstm']['kernel']}, GRU {cells['gru']['kernel']})")


def rows(section: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows of the results table: GRU/LSTM per size on equal kernels (the cells) and as run
    (this machine's kernels), quiet and under load. Results saved before the equal-kernel
    mode existed show the as-run figures alone."""
    out = []
    loaded = section.get("loaded", {}).get("sizes", [])
    # Results saved before rnnsweep.cost.RATIO_INTERVAL was recorded held t intervals.
    interval = section["quiet"].get("interval", "t interval on the mean log ratio")
    for i, s in enumerate(section["quiet"]["sizes"]):
        label = f"H={s['hidden_size']} L={s['num_layers']}"
        text = f"as run {_mode_text(s)}"
        if "equal_kernels" in s:
            text = f"equal kernels {_mode_text(s['equal_kernels'])}; {text}"
        if i < len(loaded):
            g = loaded[i]
            text += f"; under load: as run {_ratio_text(g['time_ratios']['gru/lstm'])}"
            if "equal_kernels" in g:
                eq = g["equal_kernels"]["time_ratios"]["gru/lstm"]
                text += f", equal kernels {_ratio_text(eq)}"
        modes = "on equal kernels and as run" if "equal_kernels" in s else "as run"
        out.append((f"cost probe {label}: GRU/LSTM CPU time per step ({interval} over "
                    f"rounds) and memory per step, {modes}", text, "report", "-"))
    return out


if __name__ == "__main__":
    # Quiet figures only (`python -m benchmarks cost` also runs them under load and saves).
    run(rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 20, under_load=False)
