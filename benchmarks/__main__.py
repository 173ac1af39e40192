"""`python -m benchmarks` runs every benchmark; `--only overhead,bookkeeping` picks some.

Each benchmark's section of benchmarks/results/latest.json is replaced when it runs and the
others are kept, so a heavy part can be re-run alone; latest.md is rebuilt from the JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from benchmarks import report
from benchmarks.common import machine

# Sizes per level: "quick" only checks that a benchmark runs; "short" fits a busy shared
# machine in about half an hour; "full" (make bench) is what the README quotes.
LEVELS = ("quick", "short", "full")


def _pick(level: str, quick: Any, short: Any, full: Any) -> Any:
    return {"quick": quick, "short": short, "full": full}[level]


def _overhead(level: str) -> dict[str, Any]:
    from benchmarks import overhead

    size = {"hidden": 128, "seq_len": 100, "batch": 64,
            "n_train": _pick(level, 320, 1280, 1280), "n_val": _pick(level, 128, 320, 320)}
    return overhead.run(size, epochs=_pick(level, 3, 4, 4), reps=_pick(level, 1, 2, 3),
                        cells=("lstm",) if level == "quick" else overhead.CELLS)


def _bookkeeping(level: str) -> dict[str, Any]:
    from benchmarks import bookkeeping

    return bookkeeping.run(leak_trials=_pick(level, 8, 50, 50),
                           default_trials=_pick(level, 2, 3, 4))


def _search(level: str) -> dict[str, Any]:
    """Sampler x pruner at the default profile (benchmarks/search_efficiency.py; alone it
    writes results/search_efficiency.json). full: the 4 x 4 grid, 5 seeds (about 80 CPU
    minutes here); short: the four configurations of the recorded run; quick: tiny studies."""
    from benchmarks import search_efficiency as se

    if level == "quick":
        return se.run(seeds=1, configs=["random+none", "tpe+median"], extra=se.TINY)
    configs = None if level == "full" else se.SHORT_CONFIGS
    return se.run(seeds=_pick(level, 1, 3, 5), configs=configs)


def _scaling(level: str) -> dict[str, Any]:
    from benchmarks import scaling

    return scaling.run(n_trials=_pick(level, 4, 8, 12))


def _sweep(level: str) -> dict[str, Any]:
    import os

    from benchmarks import scaling

    return scaling.sweep_run(workers=os.cpu_count() or 1)


def _kernels(level: str) -> dict[str, Any]:
    from benchmarks import kernels

    return kernels.run(min_cpu_s=_pick(level, 0.2, 0.5, 1.0))


def _cost(level: str) -> dict[str, Any]:
    from benchmarks import cost_probe

    return cost_probe.run(rounds=_pick(level, 3, 10, 20), under_load=level != "quick")


def _e2e(level: str) -> dict[str, Any]:
    from benchmarks import end_to_end

    return end_to_end.run(("smoke", "default") if level == "full" else ("smoke",))


def _evidence(level: str) -> dict[str, Any]:
    """`make evidence`'s sweep and report (about an hour): run it alone, `--only evidence`."""
    from benchmarks import end_to_end

    return end_to_end.run(("evidence",))


def _papers(level: str) -> dict[str, Any]:
    """The four paper profiles (hours here: run alone, `--only papers`); quick: *_smoke."""
    from benchmarks import papers

    return papers.run(smoke=level == "quick")


BENCHMARKS: dict[str, Callable[[str], dict[str, Any]]] = {
    "overhead": _overhead,
    "bookkeeping": _bookkeeping,
    "kernels": _kernels,
    "cost": _cost,
    "search": _search,
    "scaling": _scaling,
    "sweep": _sweep,
    "e2e": _e2e,
    "evidence": _evidence,
    "papers": _papers,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    # evidence (about an hour) and papers (hours) run only when named
    parser.add_argument("--only", default=",".join(n for n in BENCHMARKS
                                                   if n not in ("evidence", "papers")),
                        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--level", choices=LEVELS, default="full",
                        help="quick: checks the benchmarks run; short: a busy machine; full")
    parser.add_argument("--results", default=str(report.RESULTS_DIR),
                        help="folder for latest.json and latest.md")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: --only {','.join(unknown)} is invalid: allowed: {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    # Library chatter (Lightning tips, Optuna per-trial lines) would bury the table.
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "optuna", "rnnsweep", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    results_dir = report.Path(args.results)
    for name in names:
        print(f"running {name} ...", flush=True)
        started = time.perf_counter()
        section = BENCHMARKS[name](args.level)
        section["seconds"] = time.perf_counter() - started
        section["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        section["machine"] = machine()
        section["level"] = args.level
        data = report.update(results_dir, name, section)
        print(report.table(data), flush=True)
    print(json.dumps({"results": str(results_dir / "latest.json")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
