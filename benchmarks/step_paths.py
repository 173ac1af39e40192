"""CPU time per training step of each cell, on the path the studies run and on the paths it
replaced, side by side in one process: `python -m benchmarks.step_paths [--quick]`.

Shapes are the studies' own: the default profile (adding), weiss2018 (anbn) and chung2014
(chorales, parameter-matched sizes), each composed from conf/ as train.py composes it, with
the data module's own first training batches. Variants, interleaved round by round:
- `packed`: variable-length batches packed (the path before padded batches; only for tasks
  with variable lengths);
- `padded`: the path training runs now (padded, cut to the batch's longest sequence);
- for the GRU (and tanh RNN) when their class has a `kernel` key: `kernel=python` (the fused
  kernel's Python step loop) and `kernel=torch` (torch's own per-step path) beside the
  default `auto` (the fused kernel's C++ step loop).
One step = LightningModule.training_step (loss over real steps), backward, Adam step; one
torch thread; CPU seconds of this process (robust to a busy neighbour), median over rounds.
The kernel each variant ran is read from its autograd graph and printed beside it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import ROOT, compose_config, machine
from rnnsweep.cells import cell_config
from rnnsweep.data import build_datamodule
from rnnsweep.job import train_setup
from rnnsweep.measure import graph_backend
from rnnsweep.training import build_module

RESULTS = ROOT / "benchmarks" / "results" / "step_paths.json"
# (label, overrides): the studies' shapes, as each profile runs them.
SHAPES = [
    ("default (adding)", ["data.size=large"]),
    ("weiss2018 (anbn)", ["experiment=weiss2018", "data.size=large"]),
    # chung2014 matches parameter counts (about 20k): each cell at its own hidden size.
    ("chung2014 (chorales)", ["experiment=chung2014", "data.size=large",
                              "model.param_budget=20000"]),
]
CELLS = ("lstm", "gru", "rnn")


@dataclass
class Variant:
    label: str
    cell: str
    packed: bool
    kernel: str | None  # the cell's `kernel` key, when it has one


def _has_kernel_key(cell: str) -> bool:
    from hydra.utils import get_class

    cls = get_class(cell_config(cell)["_target_"])
    return "kernel" in inspect.signature(cls.__init__).parameters


def variants(variable_length: bool) -> list[Variant]:
    out = []
    for cell in CELLS:
        kernels = ["auto", "python", "torch"] if _has_kernel_key(cell) else [None]
        for kernel in kernels:
            suffix = "" if kernel in (None, "auto") else f" kernel={kernel}"
            out.append(Variant(f"{cell} padded{suffix}", cell, False, kernel))
        if variable_length:
            out.append(Variant(f"{cell} packed (before)", cell, True, kernels[-1]))
    return out


class Step:
    """One variant's module, Adam and batches; calling it runs one training step."""

    def __init__(self, shape: list[str], variant: Variant, n_batches: int = 4) -> None:
        overrides = [*shape, f"cell={variant.cell}"]
        if variant.kernel is not None:
            overrides.append(f"cell.kernel={variant.kernel}")
        cfg = compose_config(overrides)
        dm = build_datamodule(cfg.data)
        dm.setup("fit")
        torch.manual_seed(0)
        self.module = build_module(train_setup(cfg).nodes, dm).train()
        if variant.packed:
            self.module.net.rnn.needs_packing = True  # the replaced path: torch's packing
        loader = iter(dm.train_dataloader())
        self.batches = [next(loader) for _ in range(min(n_batches, dm.batches_per_epoch()))]
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=1e-3)
        self.i = 0
        self.hidden = self.module.net.rnn.hidden_size
        self.layers = int(cfg.model.num_layers)
        loss = self.module.training_step(self.batches[0], 0)
        self.kernel = graph_backend(loss)
        self.shape = tuple(self.batches[0][0].shape)

    def __call__(self) -> None:
        batch = self.batches[self.i % len(self.batches)]
        self.i += 1
        self.optimizer.zero_grad(set_to_none=True)
        self.module.training_step(batch, 0).backward()
        self.optimizer.step()


def measure_shape(label: str, shape: list[str], rounds: int, steps: int) -> dict[str, Any]:
    probe_cfg = compose_config(shape)
    variable = build_datamodule(probe_cfg.data).spec.variable_length
    built = {v.label: Step(shape, v) for v in variants(variable)}
    for step in built.values():  # warm-up: first-call allocations, oneDNN primitive caches
        for _ in range(2):
            step()
    seconds: dict[str, list[float]] = {k: [] for k in built}
    for r in range(rounds):
        order = list(built) if r % 2 == 0 else list(reversed(built))
        for key in order:
            start = time.process_time()
            for _ in range(steps):
                built[key]()
            seconds[key].append((time.process_time() - start) / steps)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    rows = {k: {"cpu_ms_per_step": 1e3 * med[k],
                "ratio_to_lstm_padded": med[k] / med["lstm padded"],
                "kernel": built[k].kernel, "hidden_size": built[k].hidden,
                "num_layers": built[k].layers, "batch_shape": list(built[k].shape),
                "rounds_ms": [1e3 * s for s in seconds[k]]} for k in built}
    return {"shape": label, "overrides": shape, "variable_length": variable, "rows": rows}


def markdown(results: dict[str, Any]) -> str:
    """The table docs/performance.md quotes, from a results file."""
    m = results["machine"]
    lines = [f"Measured {results['date']} on {m['cpu_model']}, {m['cpu_cores']} cores, torch "
             f"{m['torch']}, one torch thread: CPU ms per training step, median of "
             f"{results['rounds']} interleaved rounds of {results['steps_per_round']} steps "
             "(`python -m benchmarks.step_paths`).", "",
             "| shape | variant | hidden x layers | ms/step | x LSTM padded | kernel |",
             "|---|---|---|---|---|---|"]
    for shape in results["shapes"]:
        for key, row in shape["rows"].items():
            lines.append(f"| {shape['shape']} | {key} | {row['hidden_size']} x "
                         f"{row['num_layers']} | {row['cpu_ms_per_step']:.2f} | "
                         f"{row['ratio_to_lstm_padded']:.2f} | {row['kernel']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, 2 steps: a smoke run")
    parser.add_argument("--only", default="", help="comma-separated shape labels' first word")
    parser.add_argument("--markdown", action="store_true",
                        help="print the last results' table (docs/performance.md) and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(RESULTS.read_text())))
        return 0
    torch.set_num_threads(1)
    rounds, steps = (3, 2) if args.quick else (9, 5)
    wanted = {w for w in args.only.split(",") if w}
    started = time.perf_counter()
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "threads": 1,
               "rounds": rounds, "steps_per_round": steps, "shapes": []}
    for label, shape in SHAPES:
        if wanted and label.split()[0] not in wanted:
            continue
        res = measure_shape(label, shape, rounds, steps)
        results["shapes"].append(res)
        print(f"\n{label}  (one torch thread, CPU ms per training step, median of {rounds})")
        for key, row in res["rows"].items():
            ratio = row["ratio_to_lstm_padded"]
            print(f"  {key:<26} {row['cpu_ms_per_step']:8.2f} ms  x{ratio:.2f}"
                  f" of lstm padded  H={row['hidden_size']} L={row['num_layers']}"
                  f" batch={row['batch_shape']}  [{row['kernel']}]", flush=True)
    results["wall_seconds"] = time.perf_counter() - started
    if args.quick:
        return 0
    if wanted and RESULTS.exists():  # a part rerun replaces its shapes, keeps the others
        kept = json.loads(RESULTS.read_text())
        fresh = {s["shape"] for s in results["shapes"]}
        results["shapes"] = [s for s in kept["shapes"] if s["shape"] not in fresh] \
            + results["shapes"]
        results["shapes"].sort(key=lambda s: [label for label, _ in SHAPES].index(s["shape"]))
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwritten: {Path(RESULTS).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
