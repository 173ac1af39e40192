"""Cost probe (report claims 2-3): per-cell time, memory and FLOPs per training step.

The same probe the report runs (rnnsweep.cost): LSTM, GRU and tanh RNN at identical sizes
on the default adding task's shapes, timed interleaved in one process (thread CPU time at
one torch thread), warm-up excluded. With `under_load`, the probe runs a second time
beside one CPU-burning process per core, to show how far load moves the ratios.
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
from rnnsweep.data.base import TaskSpec

ADDING = TaskSpec(input_size=2, output_size=1, loss="mse")
SIZES = (Size(32, 1), Size(64, 1), Size(128, 2))


def table(result: ProbeResult) -> str:
    """Plain-text figures per size and cell, with the time ratios."""
    lines = [f"cost probe: {result.device}, {result.timer}, {result.threads} thread(s), "
             f"batch {result.batch_size} x T={result.seq_len}, {result.warmup_steps} warm-up "
             f"steps, {result.steps_per_round} steps per cell per round"]
    for s in result.sizes:
        for c, v in s.cells.items():
            sp, m = v.spread(), v.memory
            lines.append(
                f"  {s.size.label():12s} {c:4s} {1e3 * sp['median']:7.2f} ms/step "
                f"[q1 {1e3 * sp['q1']:.2f}, q3 {1e3 * sp['q3']:.2f}] {v.flops / 1e6:7.1f} "
                f"MFLOP {v.n_params:7d} params, {m.total / 2**20:6.2f} MiB = params "
                f"{m.params / 2**20:.3f} + grads {m.grads / 2**20:.3f} + Adam "
                f"{m.optimizer / 2**20:.3f} + activations {m.activations / 2**20:.2f}; "
                f"{v.kernel}")
        for k, r in s.ratios.items():
            lines.append(f"  {s.size.label():12s} time {k}: {r.text()}")
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


def rows(section: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows of the results table: GRU/LSTM time ratio per size, quiet and under load."""
    out = []
    loaded = section.get("loaded", {}).get("sizes", [])
    for i, s in enumerate(section["quiet"]["sizes"]):
        label = f"H={s['hidden_size']} L={s['num_layers']}"
        q = s["time_ratios"]["gru/lstm"]
        text = f"{q['estimate']:.3g} [{q['low']:.3g}–{q['high']:.3g}]"
        if i < len(loaded):
            g = loaded[i]["time_ratios"]["gru/lstm"]
            text += f"; under load {g['estimate']:.3g} [{g['low']:.3g}–{g['high']:.3g}]"
        mem = s["cells"]["gru"]["memory_bytes"]["total"] / s["cells"]["lstm"]["memory_bytes"][
            "total"]
        kernels = ", ".join(f"{c} {v['kernel']}" for c, v in s["cells"].items()
                            if c in ("lstm", "gru"))
        out.append((f"cost probe {label}: GRU/LSTM CPU time per step (t interval over "
                    f"rounds); memory ratio {mem:.3g}; {kernels}", text, "report", "-"))
    return out
