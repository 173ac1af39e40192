"""Target 4: finished trials per minute of one study, 2 worker processes with 1 torch thread
each against 1 worker with 2 threads (and, for contrast, 2 workers with 2 threads each).
Target 5 (`sweep_run`): the wall time of `make sweep`'s whole default sweep with one worker
per core (Hydra's joblib launcher) against its studies one after another, at equal trials and
seeds, run back to back in one benchmark run, with each study's best value compared.

Workers are real `python train.py` processes on one study in a throwaway project copy. Every
trial does the same work (fixed size, fixed epochs, no pruning; only dropout is searched, and
with one layer it does not change the compute), so the rate compares like with like. The rate
is read from Optuna's own timestamps: finished trials / (last completion - first start),
which leaves out interpreter start-up.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import optuna

from benchmarks.common import project_copy

WORKLOAD = [
    "cell=lstm", "data.size=small", "search=random",
    "search.reeval_seeds=0", "~search.space.num_layers", "~search.space.hidden_size",
    "~search.space.lr", "model.hidden_size=128", "data.seq_len=50",
    "data.n_train_small=1024", "data.n_val=512", "trainer.budget_unit=epochs",
    "trainer.max_epochs=4", "trainer.early_stopping_patience=4",
]
SETUPS = {
    "1 worker x 2 threads": (1, None),  # null: the automatic policy gives it every core
    "2 workers x 1 thread": (2, None),  # null + RNNSWEEP_LOCAL_WORKERS=2: one thread each
    "2 workers x 2 threads": (2, 2),  # what happens without the policy: oversubscribed
}


def trials_per_minute(storage: str) -> tuple[float, int]:
    summaries = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summaries[0].study_name, storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    return len(done) / ((end - start).total_seconds() / 60), len(done)


def run_setup(workers: int, threads: int | None, n_trials: int) -> dict[str, Any]:
    with project_copy() as (project, env):
        env["RNNSWEEP_LOCAL_WORKERS"] = str(workers)
        args = [*WORKLOAD, f"search.n_trials={n_trials}"]
        if threads:
            args.append(f"trainer.num_threads={threads}")
        procs = [subprocess.Popen([sys.executable, "train.py", *args], cwd=project, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(workers)]
        errors = [p.communicate()[1] for p in procs]
        codes = [p.returncode for p in procs]
        if any(codes):
            tail = next(e for e, c in zip(errors, codes, strict=True) if c).strip()
            raise RuntimeError(f"a worker failed ({codes}): {tail.splitlines()[-1:]}")
        rate, done = trials_per_minute(f"sqlite:///{project}/mlruns/optuna.db")
    return {"workers": workers, "threads_per_worker": threads or "auto",
            "trials_per_minute": rate, "finished": done}


def run(n_trials: int = 12, reps: int = 1) -> dict[str, Any]:
    rates: dict[str, list[float]] = {name: [] for name in SETUPS}
    details: dict[str, Any] = {}
    for _ in range(reps):
        for name, (workers, threads) in SETUPS.items():
            got = run_setup(workers, threads, n_trials)
            rates[name].append(got["trials_per_minute"])
            details[name] = got
    base = sorted(rates["1 worker x 2 threads"])[len(rates["1 worker x 2 threads"]) // 2]
    speedups = {name: sorted(r)[len(r) // 2] / base for name, r in rates.items()}
    return {"workload": WORKLOAD, "n_trials": n_trials, "reps": reps, "setups": details,
            "trials_per_minute": rates, "speedup_vs_1x2": speedups, "target": 1.7,
            "met": speedups["2 workers x 1 thread"] >= 1.7}


SWEEP = ["-m", "cell=lstm,gru"]  # make sweep's command; its profile is the default one


def sweep_wall(workers: int) -> dict[str, Any]:
    """One default sweep in a fresh project copy: wall seconds, and each study's best value
    and trial count (1 worker: Hydra's basic launcher, today's order; more: joblib)."""
    import time

    launcher = [] if workers == 1 else ["hydra/launcher=joblib",
                                        f"hydra.launcher.n_jobs={workers}"]
    with project_copy() as (project, env):
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "train.py", *SWEEP, *launcher], cwd=project,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        wall = time.perf_counter() - started
        if proc.returncode:
            raise RuntimeError(f"sweep failed: {proc.stderr.strip().splitlines()[-1:]}")
        storage = f"sqlite:///{project}/mlruns/optuna.db"
        studies = {}
        for summary in optuna.get_all_study_summaries(storage):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            studies[summary.study_name] = {"best": study.best_value,
                                           "trials": len(study.trials)}
    return {"workers": workers, "wall_s": wall, "studies": studies}


def sweep_run(workers: int) -> dict[str, Any]:
    """The default sweep sequentially, then with `workers` jobs at once (back to back)."""
    import os

    seq, par = sweep_wall(1), sweep_wall(workers)
    same = {name: (seq["studies"][name], par["studies"].get(name)) for name in seq["studies"]}
    return {"command": "python train.py " + " ".join(SWEEP), "cores": os.cpu_count(),
            "sequential": seq, "parallel": par, "ratio": par["wall_s"] / seq["wall_s"],
            "target": 0.65, "met": par["wall_s"] / seq["wall_s"] <= 0.65,
            "same_trials": all(a["trials"] == (b or {}).get("trials") for a, b in same.values()),
            "same_best": all(b is not None and a["best"] == b["best"] for a, b in same.values())}
