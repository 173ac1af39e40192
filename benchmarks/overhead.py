"""Target 1: epoch time of the pipeline's training loop over a bare PyTorch loop.

Both sides train the same SequenceModel from the same seed on the same tensors in the same
shuffled order, with Adam, gradient-norm clipping and a validation pass per epoch. The
pipeline side is `train_model` with the callbacks a trial uses (EpochRecorder, EarlyStopping,
Optuna's pruning callback, MLflow per-epoch logging into a throwaway store). An epoch is
timed from one epoch start to the next, so epoch-end hooks and logging are included; the
first epoch (kernel warm-up) is dropped on both sides. Repetitions alternate the order.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from benchmarks.common import compose_config, summary, temp_root

CELLS = ("rnn", "lstm", "gru")


def overrides(cell: str, size: dict[str, int], epochs: int, threads: int) -> list[str]:
    return [
        f"cell={cell}", "model.num_layers=1", "model.dropout=0.0",
        f"model.hidden_size={size['hidden']}", f"data.seq_len={size['seq_len']}",
        f"data.batch_size={size['batch']}", f"data.n_train_small={size['n_train']}",
        f"data.n_val={size['n_val']}", f"data.n_test={size['batch']}", "data.size=small",
        "trainer.budget_unit=epochs", f"trainer.max_epochs={epochs}",
        f"trainer.early_stopping_patience={epochs}",
        f"trainer.num_threads={threads}",
    ]


class EpochStarts(Callback):
    """Timestamps at every epoch start and at the end of fit."""

    def __init__(self) -> None:
        self.stamps: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stamps.append(clocks())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stamps.append(clocks())


def clocks() -> tuple[float, float]:
    """(wall, CPU) seconds. CPU time of a one-thread process is the robust measure on a
    shared machine: other processes' load inflates wall time but not our CPU time."""
    return time.perf_counter(), time.process_time()


def durations(stamps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Per-epoch (wall, CPU) durations, the first (warm-up) epoch dropped."""
    pairs = zip(stamps, stamps[1:], strict=False)
    return [(b[0] - a[0], b[1] - a[1]) for a, b in pairs][1:]


def pipeline_epochs(cfg: Any, seed: int) -> list[tuple[float, float]]:
    """Epoch times of `train_model` with a trial's callbacks and tracking."""
    from rnnsweep.data import build_datamodule
    from rnnsweep.job import study_settings, train_setup
    from rnnsweep.search.study import make_storage, open_study
    from rnnsweep.tracking import Tracker
    from rnnsweep.training import train_model

    datamodule = build_datamodule(cfg.data)
    tracker = Tracker(cfg.tracking)
    run_id = tracker.start_run("overhead", name="trial", tags={"role": "trial"})
    study = open_study(study_settings(cfg), f"overhead-{cfg.cell.name}",
                       make_storage(cfg.search))
    trial = study.ask()

    def log_validation(step: int, metrics: dict[str, float]) -> None:
        tracker.log(run_id, metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
                    step=step)

    timer = EpochStarts()
    result = train_model(train_setup(cfg), datamodule, seed, callbacks=[timer],
                         on_validation=log_validation, trial=trial)
    study.tell(trial, result.best_value)
    tracker.end_run(run_id, "FINISHED")
    return durations(timer.stamps)


def bare_epochs(cfg: Any, seed: int) -> list[tuple[float, float]]:
    """The same math as a hand-written loop over pre-sliced tensors."""
    from rnnsweep.data import build_datamodule
    from rnnsweep.model import SequenceModel
    from rnnsweep.targets import build

    dm = build_datamodule(cfg.data)
    dm.setup("fit")
    x, y, lengths = dm.train_set.tensors
    vx, vy, vlengths = dm.val_set.tensors
    pl.seed_everything(seed, workers=False, verbose=False)
    torch.use_deterministic_algorithms(bool(cfg.trainer.deterministic))
    model = SequenceModel(cfg.cell, dm.spec, int(cfg.model.hidden_size),
                          int(cfg.model.num_layers), float(cfg.model.dropout))
    opt = build(cfg.optim)(model.parameters())
    gen = torch.Generator().manual_seed(dm.order_seed)
    b, n = dm.batch_size, len(x)
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    stamps = []
    for _ in range(int(cfg.trainer.max_epochs)):
        stamps.append(clocks())
        model.train()
        train_sum = torch.zeros(())
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, b):
            idx = perm[i : i + b]
            out = model(x[idx], lengths[idx])
            loss = F.mse_loss(out.reshape(y[idx].shape), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg.trainer.gradient_clip_val))
            opt.step()
            train_sum += loss.detach() * len(idx)
        model.eval()
        val_sum = torch.zeros(())
        with torch.inference_mode():
            for i in range(0, len(vx), b):
                out = model(vx[i : i + b], vlengths[i : i + b])
                val_sum += F.mse_loss(out.reshape(vy[i : i + b].shape), vy[i : i + b]) * len(
                    vx[i : i + b])
        _ = float(train_sum) / n, float(val_sum) / len(vx)  # one host read per epoch
    stamps.append(clocks())
    return durations(stamps)


def loader_cost(cfg: Any) -> dict[str, float]:
    """Microseconds per batch to produce a batch: the DataLoader vs direct slicing."""
    from rnnsweep.data import build_datamodule

    dm = build_datamodule(cfg.data)
    dm.setup("fit")
    loader = dm.train_dataloader()
    x, y, lengths = dm.train_set.tensors
    n_batches = len(loader)
    reps = 20
    start = time.perf_counter()
    for _ in range(reps):
        for _batch in loader:
            pass
    via_loader = (time.perf_counter() - start) / (reps * n_batches)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(reps):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), dm.batch_size):
            idx = perm[i : i + dm.batch_size]
            _batch = (x[idx], y[idx], lengths[idx])
    sliced = (time.perf_counter() - start) / (reps * n_batches)
    return {"dataloader_us_per_batch": via_loader * 1e6, "slicing_us_per_batch": sliced * 1e6}


def run(size: dict[str, int], epochs: int, reps: int, cells: tuple[str, ...] = CELLS,
        seed: int = 0, threads: int = 1) -> dict[str, Any]:
    results: dict[str, Any] = {"size": size, "epochs_per_run": epochs, "reps": reps,
                               "torch_threads": threads, "target": 1.05, "cells": {}}
    saved_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp, temp_root(Path(tmp)):
        for cell in cells:
            cfg = compose_config(overrides(cell, size, epochs, threads))
            got: dict[str, dict[str, list[float]]] = {
                side: {"wall": [], "cpu": []} for side in ("bare", "pipeline")}
            for rep in range(reps):
                # Alternate which side runs first, so drift on a shared machine cancels.
                order = ("bare", "pipeline") if rep % 2 == 0 else ("pipeline", "bare")
                for side in order:
                    fn = bare_epochs if side == "bare" else pipeline_epochs
                    epochs_got = fn(cfg, seed)
                    got[side]["wall"].append(statistics.median(e[0] for e in epochs_got))
                    got[side]["cpu"].append(statistics.median(e[1] for e in epochs_got))
            cell_result: dict[str, Any] = {}
            for clock in ("cpu", "wall"):
                pairs = zip(got["pipeline"][clock], got["bare"][clock], strict=True)
                cell_result[f"ratio_{clock}"] = summary([p / b for p, b in pairs])
                cell_result[f"pipeline_epoch_{clock}_s"] = summary(got["pipeline"][clock])
                cell_result[f"bare_epoch_{clock}_s"] = summary(got["bare"][clock])
            cell_result.update(loader_cost(cfg))
            results["cells"][cell] = cell_result
    torch.set_num_threads(saved_threads)
    worst = max(c["ratio_cpu"]["median"] for c in results["cells"].values())
    results["worst_median_ratio"] = worst
    results["met"] = worst <= results["target"]
    return results
