"""Target 3: epochs seeded TPE with the configured pruner needs, against random search
without pruning, to come within 5% of the random search's final best validation loss.

Both searches use the project's own sampler, pruner and `train_model` (rnnsweep.search.study,
rnnsweep.training) with Optuna's Lightning pruning callback, on in-memory studies: the
quantity compared is epochs, so no tracking store is needed. Sizes are small (SIZES below) so
that several seeds of both searches fit in minutes; they are recorded with the results.
The sequences are short enough that good configurations learn the task within the epoch
budget (a loss near 0.167, the variance of the target, means nothing was learned and every
trial would tie).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import optuna

from benchmarks.common import compose_config, summary

SIZES = [
    "cell=lstm", "data.size=small", "data.seq_len=10", "data.n_train_small=2048",
    "data.n_val=256", "data.n_test=64", "data.batch_size=32",
    "trainer.budget_unit=epochs", "trainer.max_epochs=10", "trainer.early_stopping_patience=3",
    "search.space.num_layers.high=2", "search.space.hidden_size.low=8",
    "search.space.hidden_size.high=64", "search.reeval_seeds=0",
    # One thread: the compared quantity is epochs, and one thread is fastest on a busy machine.
    "trainer.num_threads=1",
]


def run_search(search: str, seed: int, n_trials: int) -> list[tuple[int, float]]:
    """(epochs run, best value or inf when pruned/failed) per trial, in trial order."""
    from optuna_integration import PyTorchLightningPruningCallback

    from rnnsweep.data import build_datamodule
    from rnnsweep.search import space as search_space
    from rnnsweep.search.objective import trial_seed
    from rnnsweep.search.study import make_pruner, make_sampler
    from rnnsweep.training import train_model

    cfg = compose_config([*SIZES, f"search={search}", f"search.seed={seed}",
                          f"search.n_trials={n_trials}"])
    datamodule = build_datamodule(cfg.data)
    study = optuna.create_study(direction=cfg.search.direction, sampler=make_sampler(cfg),
                                pruner=make_pruner(cfg))
    record: list[tuple[int, float]] = []

    def objective(trial: optuna.Trial) -> float:
        values = search_space.suggest(trial, cfg.search.space)
        trial_cfg = search_space.apply(cfg, cfg.search.space, values)
        epochs: list[float] = []

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            epochs.append(metrics.get(cfg.search.metric, math.inf))

        pruning = PyTorchLightningPruningCallback(trial, monitor=cfg.search.metric)
        try:
            result = train_model(trial_cfg, datamodule, trial_seed(cfg, trial.number),
                                 callbacks=[pruning], on_epoch=on_epoch)
        finally:
            # A pruned trial's epochs were spent too; its best so far counts toward the search.
            finite = [v for v in epochs if math.isfinite(v)]
            record.append((len(epochs), min(finite) if finite else math.inf))
        return result.best_value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials, catch=(Exception,))
    return record


def epochs_to_reach(record: list[tuple[int, float]], threshold: float) -> int | None:
    spent = 0
    for epochs, value in record:
        spent += epochs
        if value <= threshold:
            return spent
    return None


def run(seeds: int = 5, n_trials: int = 16, tolerance: float = 0.05) -> dict[str, Any]:
    per_seed = []
    for seed in range(seeds):
        rand = run_search("random", seed, n_trials)
        tpe = run_search("tpe", seed, n_trials)
        best_random = min(v for _, v in rand)
        threshold = best_random * (1 + tolerance)
        rand_need = epochs_to_reach(rand, threshold)
        tpe_need = epochs_to_reach(tpe, threshold)
        per_seed.append({
            "seed": seed, "random_best": best_random, "tpe_best": min(v for _, v in tpe),
            "threshold": threshold,
            "random_total_epochs": sum(e for e, _ in rand),
            "tpe_total_epochs": sum(e for e, _ in tpe),
            "random_epochs_to_threshold": rand_need, "tpe_epochs_to_threshold": tpe_need,
            "speedup_vs_random_total": (sum(e for e, _ in rand) / tpe_need) if tpe_need else 0.0,
            "speedup_vs_random_to_threshold": (rand_need / tpe_need) if tpe_need else 0.0,
        })
    total = summary([s["speedup_vs_random_total"] for s in per_seed])
    to_threshold = summary([s["speedup_vs_random_to_threshold"] for s in per_seed])
    return {
        "sizes": SIZES, "seeds": seeds, "n_trials": n_trials, "tolerance": tolerance,
        "per_seed": per_seed,
        "speedup_vs_random_total": total,
        "speedup_vs_random_to_threshold": to_threshold,
        "tpe_reached_in": sum(1 for s in per_seed if s["tpe_epochs_to_threshold"]),
        "target": 3.0,
        "met": to_threshold["median"] >= 3.0,
        "note": "speed-up 0 means the TPE search never came within the tolerance",
        "median_random_best": statistics.median(s["random_best"] for s in per_seed),
    }
