"""Targets 2 and 5: per-trial time outside training, and memory growth over a long study.

A real study runs in this process (pipeline.run, the code path of train.py) against
throwaway stores. `train_model` is wrapped to timestamp each trial's training; everything
between the end of one trial's training and the start of the next is bookkeeping: Optuna
tell/ask, closing and opening MLflow runs, result metrics, the best-weights artifact.
Peak RSS (ru_maxrss) is read when each trial's training ends.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import compose_config, summary, temp_root


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def instrumented_study(overrides: list[str]) -> dict[str, Any]:
    """Run one study; return per-trial training spans and peak RSS at each trial start."""
    from rnnsweep import pipeline
    from rnnsweep.search import objective

    spans: list[tuple[float, float]] = []
    rss: list[int] = []  # peak RSS when each trial's training ended
    original = objective.train_model

    def timed_train_model(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spans.append((start, time.perf_counter()))
            rss.append(peak_rss_bytes())

    objective.train_model = timed_train_model
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp, temp_root(Path(tmp)):
            pipeline.run(compose_config(overrides))
    finally:
        objective.train_model = original
    wall = time.perf_counter() - started
    gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False)]
    trial_walls = [b[0] - a[0] for a, b in zip(spans, spans[1:], strict=False)]
    return {"wall_s": wall, "n_trials": len(spans), "gaps": gaps, "trial_walls": trial_walls,
            "train_s": [b - a for a, b in spans], "rss": rss}


def run(leak_trials: int = 50, default_trials: int = 4) -> dict[str, Any]:
    # A long study at smoke sizes: bookkeeping does not depend on model size, and 50 trials
    # at default sizes would take most of an hour on two cores.
    long = instrumented_study([
        "experiment=smoke", "cell=lstm", "data.size=small", f"search.n_trials={leak_trials}",
        "search.reeval_seeds=0"])
    # A few trials at the default profile give the trial time bookkeeping is compared with.
    default = instrumented_study([
        "cell=lstm", "data.size=small", f"search.n_trials={default_trials}",
        "search.reeval_seeds=0"])
    gaps = long["gaps"] + default["gaps"]
    gap_median = statistics.median(gaps)
    default_trial = statistics.median(default["trial_walls"])
    rss = long["rss"]
    first = rss[min(4, len(rss) - 1)]  # peak when trial 5 ended
    growth = rss[-1] / first - 1.0
    return {
        "bookkeeping": {
            "per_trial_s": summary(gaps),
            "default_trial_s": summary(default["trial_walls"]),
            "share_of_default_trial": gap_median / default_trial,
            "target_s": 0.25, "target_share": 0.03,
            "met": gap_median <= 0.25 and gap_median / default_trial <= 0.03,
            "sizes": "smoke profile (long study) + default profile, data.size=small, lstm",
        },
        "memory": {
            "trials": long["n_trials"],
            "peak_rss_after_trial_5_mb": first / 2**20,
            "peak_rss_at_end_mb": rss[-1] / 2**20,
            "growth": growth,
            "peak_rss_series_mb": [r / 2**20 for r in rss],
            "target_growth": 0.05, "met": growth <= 0.05,
        },
        "long_study_wall_s": long["wall_s"],
    }
