"""Target 7 (report only): achieved forward+backward GFLOP/s of the recurrent layer per cell
against the measured matrix-multiply peak, with the kernel path each cell takes.

FLOPs count the gate matrix multiplies only: a layer does 2*G*B*H*(I+H) per time step
forward (G = 1, 4, 3 gate blocks for rnn, lstm, gru) and about twice that backward.
Times are CPU seconds of this process at one torch thread (robust on a shared machine);
wall-clock figures at the machine's thread count are given beside them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rnnsweep.cells import build_cell, recurrent_flops


def flops_fwd_bwd(cell: str, batch: int, seq_len: int, inp: int, hidden: int) -> float:
    return 3 * recurrent_flops(cell, inp, hidden, 1) * batch * seq_len


def time_it(fn: Callable[[], Any], min_cpu_s: float = 1.0) -> dict[str, float]:
    """Median CPU and wall seconds per call over repeated blocks after one warm-up call."""
    fn()
    cpu, wall = [], []
    spent = 0.0
    while spent < min_cpu_s or len(cpu) < 3:
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        c, w = time.process_time() - c0, time.perf_counter() - w0
        cpu.append(c)
        wall.append(w)
        spent += c
    cpu.sort()
    wall.sort()
    return {"cpu_s": cpu[len(cpu) // 2], "wall_s": wall[len(wall) // 2]}


def kernel_path(layer: nn.Module, x: torch.Tensor) -> str:
    """The ATen ops that dominate one forward+backward, from the profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out, _ = layer(x)
        out.sum().backward()
    names = {e.key for e in prof.key_averages()}
    if any("mkldnn_rnn" in n for n in names):
        return "fused oneDNN RNN (aten::mkldnn_rnn_layer)"
    cell_ops = sorted(n for n in names if n in ("aten::gru_cell", "aten::rnn_tanh_cell",
                                                "aten::lstm_cell", "aten::_thnn_fused_gru_cell",
                                                "aten::_thnn_fused_lstm_cell"))
    return "per-step ATen cells (" + ", ".join(cell_ops or ["aten::addmm"]) + ")"


def fwd_bwd(layer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        layer.zero_grad(set_to_none=True)
        out, _ = layer(x)
        out.sum().backward()
    return step


def matmul_peak(batch: int, hidden: int, gates: int = 4) -> dict[str, float]:
    """GFLOP/s of a large square matmul and of the gate matmul shape (B x H) @ (H x G*H)."""
    big = torch.randn(1024, 1024)
    sq = time_it(lambda: big @ big)
    a, w = torch.randn(batch, hidden), torch.randn(hidden, gates * hidden)
    reps = 200

    def gate_mm() -> None:
        for _ in range(reps):
            a @ w
    gm = time_it(gate_mm)
    return {"square_1024_gflops": 2 * 1024**3 / sq["cpu_s"] / 1e9,
            "gate_shape_gflops": 2 * batch * hidden * gates * hidden * reps / gm["cpu_s"] / 1e9}


def run(batch: int = 64, seq_len: int = 100, hidden: int = 128, inp: int = 2,
        min_cpu_s: float = 1.0) -> dict[str, Any]:
    saved_threads = torch.get_num_threads()
    machine_threads = saved_threads
    torch.manual_seed(0)
    x = torch.randn(batch, seq_len, inp)
    results: dict[str, Any] = {"shape": {"batch": batch, "seq_len": seq_len, "hidden": hidden,
                                         "input": inp}, "cells": {}, "variants": {}}
    try:
        torch.set_num_threads(1)
        results["matmul_peak_1thread"] = matmul_peak(batch, hidden)
        peak = results["matmul_peak_1thread"]["square_1024_gflops"]
        for cell in ("rnn", "lstm", "gru"):
            layer = build_cell(cell, inp, hidden)
            flops = flops_fwd_bwd(cell, batch, seq_len, inp, hidden)
            torch.set_num_threads(1)
            one = time_it(fwd_bwd(layer, x), min_cpu_s)
            torch.set_num_threads(machine_threads)
            many = time_it(fwd_bwd(layer, x), min_cpu_s)
            gflops = flops / one["cpu_s"] / 1e9
            results["cells"][cell] = {
                "kernel": kernel_path(layer, x),
                "fwd_bwd_cpu_s_1thread": one["cpu_s"],
                "gflops_1thread": gflops,
                "share_of_matmul_peak": gflops / peak,
                f"fwd_bwd_wall_s_{machine_threads}threads": many["wall_s"],
                f"gflops_wall_{machine_threads}threads": flops / many["wall_s"] / 1e9,
            }
        results["variants"] = gru_variants(x, inp, hidden, min_cpu_s)
        lstm_no_mkldnn = lstm_without_onednn(x, inp, hidden, min_cpu_s)
        results["variants"]["lstm_mkldnn_disabled"] = lstm_no_mkldnn
    finally:
        torch.set_num_threads(saved_threads)
    return results


def lstm_without_onednn(x: torch.Tensor, inp: int, hidden: int, min_cpu_s: float) -> dict:
    """What the fused path buys the LSTM: the same layer with torch.backends.mkldnn off."""
    torch.set_num_threads(1)
    layer = nn.LSTM(inp, hidden, batch_first=True)
    with torch.backends.mkldnn.flags(enabled=False):
        t = time_it(fwd_bwd(layer, x), min_cpu_s)
        path = kernel_path(layer, x)
    return {"kernel": path, "fwd_bwd_cpu_s_1thread": t["cpu_s"]}


def gru_variants(x: torch.Tensor, inp: int, hidden: int, min_cpu_s: float) -> dict[str, Any]:
    """Settings PyTorch itself offers for nn.GRU on a CPU, each timed at one thread."""
    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    layer = nn.GRU(inp, hidden, batch_first=True)
    # Alternate the two settings so that drift on a shared machine hits both alike.
    eager, off = [], []
    for _ in range(3):
        eager.append(time_it(fwd_bwd(layer, x), min_cpu_s / 3)["cpu_s"])
        # oneDNN has a GRU primitive, but PyTorch routes only nn.LSTM to it.
        with torch.backends.mkldnn.flags(enabled=False):
            off.append(time_it(fwd_bwd(layer, x), min_cpu_s / 3)["cpu_s"])
    base, t = sorted(eager)[1], sorted(off)[1]
    with torch.backends.mkldnn.flags(enabled=False):
        path = kernel_path(layer, x)
    out["gru_eager"] = {"fwd_bwd_cpu_s_1thread": base}
    out["gru_mkldnn_disabled"] = {"fwd_bwd_cpu_s_1thread": t, "speedup": base / t,
                                  "kernel": path}
    out["gru_torch_compile"] = compiled_gru_in_child(x.shape, inp, hidden, base)
    return out


COMPILE_TIMEOUT_S = 600


def compiled_gru_in_child(shape: tuple[int, ...], inp: int, hidden: int, base: float) -> dict:
    """torch.compile of nn.GRU, in a child process: compiling can take minutes on a busy
    machine and a compiler failure must not take the other figures with it."""
    cmd = [sys.executable, "-m", "benchmarks.kernels", json.dumps([list(shape), inp, hidden])]
    with tempfile.TemporaryDirectory() as cache:
        # A fresh compile cache: the timing includes compiling, and an interrupted earlier
        # compile can leave a truncated library in the shared cache.
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  timeout=COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"error": f"compiling did not finish within {COMPILE_TIMEOUT_S} s"}
    if proc.returncode:
        errors = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "error:" in ln]
        return {"error": (errors or ["failed"])[-1].strip()[:300]}
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    got["speedup"] = base / got["fwd_bwd_cpu_s_1thread"]
    return got


def _compiled_gru_main(arg: str) -> None:
    import torch._dynamo

    shape, inp, hidden = json.loads(arg)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(*shape)
    torch._dynamo.config.allow_rnn = True  # trace into nn.GRU instead of a graph break
    compiled = torch.compile(nn.GRU(inp, hidden, batch_first=True))
    w0 = time.perf_counter()
    fwd_bwd(compiled, x)()
    first = time.perf_counter() - w0
    t = time_it(fwd_bwd(compiled, x))
    print(json.dumps({"fwd_bwd_cpu_s_1thread": t["cpu_s"], "first_call_wall_s": first}))


if __name__ == "__main__":
    _compiled_gru_main(sys.argv[1])
