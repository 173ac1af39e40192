"""Wall time of `python train.py -m cell=lstm,gru` (default profile), of the smoke sweep and
of `make evidence`'s sweep, each in a fresh copy of the project (own mlruns/, nothing
shared); after the default sweep and the evidence sweep, the report is built there and the
calibration targets are read from its metrics.json:

1. every study's best configuration beats the trivial predictor by at least half its loss
   (re-evaluation validation loss <= 0.5 x baseline_loss);
2. the small condition overfits measurably: eval-mode gap on small above that on large,
   for every cell, by a one-sided Welch t-test at 5 % over the re-evaluation seeds (Hsu df:
   smallest seed count - 1);
3. at least 4 of the 6 claims decided (supported, contradicted), the rest with an MDE.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scipy import stats

from benchmarks.common import project_copy
from rnnsweep.report.claim_types import Verdict

SWEEPS = {
    "smoke": ["-m", "cell=lstm,gru", "experiment=smoke"],
    # the literal command: the config's joblib launcher, one worker per core
    "default": ["-m", "cell=lstm,gru"],
    # the Makefile's evidence target (make evidence)
    "evidence": ["-m", "experiment=evidence", "cell=lstm,gru", "data.seq_len=10,40,120",
                 "search.repeats=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}
BUDGET_S = {"default": 600.0, "evidence": 3600.0}  # the profiles' promises
DECIDED = (Verdict.SUPPORTED, Verdict.CONTRADICTED, Verdict.EQUIVALENT)


def calibration(metrics: dict[str, Any]) -> dict[str, Any]:
    """The three calibration targets, from a report's metrics.json."""
    studies = {(cell, cond): m for cell, conds in metrics.items() if cell != "claims"
               for cond, m in conds.items()}
    beats = {f"{c}/{d}": (m.get("val_mean"), m.get("baseline_loss"))
             for (c, d), m in studies.items()}
    beats_ok = all(v is not None and b and v <= 0.5 * b for v, b in beats.values())
    overfit = {}
    for (cell, cond), m in studies.items():
        if not cond.startswith("small"):
            continue
        large = studies.get((cell, "large" + cond[len("small"):]))
        if large is None:
            continue
        diff = m.get("gap_eval_mean", float("nan")) - large.get("gap_eval_mean", float("nan"))
        n_s, n_l = int(m.get("reeval_n") or 0), int(large.get("reeval_n") or 0)
        p = float("nan")
        if min(n_s, n_l) >= 2:
            se = math.sqrt((m.get("gap_eval_sd") or 0.0) ** 2 / n_s
                           + (large.get("gap_eval_sd") or 0.0) ** 2 / n_l)
            p = float(stats.t.sf(diff / se, min(n_s, n_l) - 1)) if se > 0 else float(diff <= 0)
        overfit[f"{cell}/{cond}"] = {"gap_small_minus_large": diff, "p_one_sided": p,
                                     "seeds": [n_s, n_l], "clear": bool(p < 0.05)}
    claims = metrics.get("claims", {})
    verdicts = {name: c.get("verdict") for name, c in claims.items()}
    n_decided = sum(v in DECIDED for v in verdicts.values())
    undecided_mde = {name: c.get("mde") for name, c in claims.items()
                     if c.get("verdict") not in DECIDED}
    return {
        "best_vs_trivial": beats, "beats_trivial_by_half": beats_ok,
        "overfitting": overfit,
        "small_overfits_for_every_cell": bool(overfit) and all(
            v["clear"] for v in overfit.values()),
        "claims": verdicts, "claims_decided": n_decided, "undecided_mde": undecided_mde,
        "met": beats_ok and bool(overfit) and all(v["clear"] for v in overfit.values())
        and n_decided >= 4,
    }


def run_sweep(name: str, timeout: float) -> dict[str, Any]:
    args = SWEEPS[name]
    with project_copy() as (project, env):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "train.py", *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result: dict[str, Any] = {}
        if name in BUDGET_S and proc.returncode == 0:
            report = subprocess.run([sys.executable, "-m", "rnnsweep.report"], cwd=project,
                                    env={**env, "RNNSWEEP_ROOT": str(project)},
                                    capture_output=True, text=True, timeout=timeout)
            path = Path(project) / "reports" / "adding" / "metrics.json"
            if report.returncode == 0 and path.exists():
                result["calibration"] = calibration(json.loads(path.read_text()))
                result["claims_table"] = (Path(project) / "reports" / "adding" / "tables" /
                                          "claims.csv").read_text()
    # CPU seconds of the sweep: on a shared machine wall time includes other processes' load.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tail = proc.stderr.strip().splitlines()[-1:] if proc.returncode else []
    result.update({"command": "python train.py " + " ".join(args), "wall_s": wall,
                   "cpu_s": cpu, "returncode": proc.returncode,
                   "error": tail[0] if tail else None, "load_avg_after": list(os.getloadavg())})
    if name in BUDGET_S:
        result["budget_s"] = BUDGET_S[name]
        result["within_budget"] = wall <= BUDGET_S[name]
    return result


def run(which: tuple[str, ...] = ("smoke", "default"), timeout: float = 7200) -> dict[str, Any]:
    results: dict[str, Any] = {"sweeps": {}}
    for name in which:
        results["sweeps"][name] = run_sweep(name, timeout)
    if "default" in results["sweeps"]:
        d = results["sweeps"]["default"]
        results["default_budget_s"] = BUDGET_S["default"]
        results["met"] = d["within_budget"] and d.get("calibration", {}).get("met", False)
    return results
