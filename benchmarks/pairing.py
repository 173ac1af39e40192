"""What pairing seeds does to a sweep's comparisons: Welch's interval against the paired one.

Seed k of every cell's study draws the same data (rnnsweep.data.base.draw_seed), so the
report compares cells on the per-seed differences. This prints, for the latest sweep (or
--sweep-id) of an experiment, per condition and pair of cells, the ratio of the test metric
(second/first, geometric means over the seeds both finished) with its Welch interval and its
paired interval at the same level, from the same seeds:

    python -m benchmarks.pairing --uri sqlite:///mlruns/mlflow.db --experiment adding
"""

from __future__ import annotations

import argparse
from itertools import combinations

import numpy as np

from rnnsweep.report.collect import load_sweep
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.stats import compare_means, compare_paired


def rows(uri: str, experiment: str, sweep_id: str | None, column: str,
         level: float) -> list[dict[str, object]]:
    ev = Evidence(load_sweep(uri, experiment, sweep_id))
    out = []
    for cond in ev.conditions():
        for pair in combinations(ev.cells(cond), 2):
            matched = ev.paired(pair, cond, column)
            if matched is None:
                continue
            a, b, unmatched = matched
            welch = compare_means(a, b, level=level, scale="log")
            paired = compare_paired(a, b, level=level, scale="log")
            if welch is None or paired is None:
                continue
            out.append({"condition": cond, "pair": f"{pair[1]}/{pair[0]}", "seeds": len(a),
                        "unmatched": unmatched, "ratio": float(np.exp(paired.diff)),
                        "welch": (float(np.exp(welch.ci_low)), float(np.exp(welch.ci_high))),
                        "paired": (float(np.exp(paired.ci_low)), float(np.exp(paired.ci_high)))})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="sqlite:///mlruns/mlflow.db")
    parser.add_argument("--experiment", default="adding")
    parser.add_argument("--sweep-id", default=None)
    parser.add_argument("--column", default="metrics.test_loss")
    parser.add_argument("--level", type=float, default=0.95)
    args = parser.parse_args(argv)
    print(f"| condition | ratio | seeds | {args.level:.0%} Welch | {args.level:.0%} paired |")
    print("|---|---|---|---|---|")
    for r in rows(args.uri, args.experiment, args.sweep_id, args.column, args.level):
        (wl, wh), (pl, ph) = r["welch"], r["paired"]  # type: ignore[misc]
        print(f"| {r['condition']} | {r['pair']} {r['ratio']:.3f} | {r['seeds']} "
              f"({r['unmatched']} unmatched) | {wl:.3f}-{wh:.3f} | {pl:.3f}-{ph:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
