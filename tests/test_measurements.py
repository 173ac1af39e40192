"""Every model sees what its label says: equal step budgets, clean splits, seeds that vary the
data order, reproducible trials, and a gap that does not depend on dropout."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_train
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from store_checks import all_runs, mlflow_url, start_train
from torch.utils.data import TensorDataset

from rnnsweep.data import build_datamodule
from rnnsweep.data.base import TensorDataModule, order_seed
from rnnsweep.data.spec import TaskSpec
from rnnsweep.errors import DataError
from rnnsweep.job import train_setup, typed_config
from rnnsweep.training import budget_steps, build_module, train_model

ROOT = Path(__file__).resolve().parents[1]


def config(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["paths.root=/tmp", "tracking.sweep_id=t",
                                           *overrides])
    return typed_config(cfg)


def sines_file(path: Path, n: int = 60, dup_across: int = 0) -> Path:
    """A 2-class .npz; with dup_across > 0, that many validation rows copy training rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 12, 1)).astype(np.float32)
    y = (x[:, :, 0].mean(1) > 0).astype(np.int64)
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    for k in range(dup_across):
        x[n // 2 + k], y[n // 2 + k] = x[k], y[k]
    np.savez(path, x=x, y=y, split=split)
    return path


def task_overrides(tmp_path: Path, chorale_cache: Path) -> dict[str, list[str]]:
    return {
        "adding": ["data=adding", "experiment=smoke"],
        "anbn": ["data=anbn", "experiment=smoke"],
        "chorales": ["data=chorales", "experiment=smoke", f"data.cache={chorale_cache}",
                     "data.max_chorales=null"],
        "file": ["data=file", "experiment=smoke", f"data.path={sines_file(tmp_path / 's.npz')}"],
    }


@pytest.mark.parametrize("task", ["adding", "anbn", "chorales", "file"])
def test_small_and_large_get_the_same_step_budget(task, tmp_path, chorale_cache):
    over = task_overrides(tmp_path, chorale_cache)[task]
    steps = {}
    for size in ("small", "large"):
        dm = build_datamodule(config(*over, f"data.size={size}").data)
        steps[size] = budget_steps(config(*over, f"data.size={size}").trainer, dm)
        # Counted in epochs, the budget follows the data: the documented alternative.
        epochs = budget_steps(config(*over, f"data.size={size}",
                                     "trainer.budget_unit=epochs").trainer, dm)
        assert epochs == 20 * dm.batches_per_epoch()
    assert steps["small"] == steps["large"] == 30  # the smoke profile's trainer.max_steps


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_run_takes_its_whole_step_budget_whatever_the_data_size(size):
    cfg = config("experiment=smoke", f"data.size={size}", "search=none",
                 "trainer.max_steps=40", "trainer.val_check_steps=10",
                 "trainer.early_stopping_patience=100", "trainer.num_threads=1")
    dm = build_datamodule(cfg.data)
    result = train_model(train_setup(cfg), dm, seed=0)
    assert result.optimizer_steps == result.budget_steps == 40
    assert [h["step"] for h in result.history] == [10, 20, 30, 40]


def test_stop_at_ends_a_run_at_the_first_validation_that_reaches_it():
    over = ("experiment=smoke", "data.size=small", "search=none", "trainer.max_steps=40",
            "trainer.val_check_steps=10", "trainer.early_stopping_patience=100",
            "trainer.num_threads=1")
    full = train_model(train_setup(config(*over)), build_datamodule(config(*over).data), seed=0)
    # A bound between the first new best after step 10 and everything before it: the run
    # must stop exactly at that validation, no sooner, no later.
    values = [h["val_loss"] for h in full.history]
    k = next(i for i in range(1, len(values)) if values[i] < min(values[:i]))
    assert k < len(values) - 1  # the run has a validation left to skip
    bound = (min(values[:k]) + values[k]) / 2
    cfg = config(*over, f"trainer.stop_at={bound}")
    stopped = train_model(train_setup(cfg), build_datamodule(cfg.data), seed=0)
    assert [h["step"] for h in stopped.history] == [10 * (i + 1) for i in range(k + 1)]
    assert stopped.optimizer_steps == 10 * (k + 1) and stopped.budget_steps == 40


@pytest.mark.parametrize("task", ["adding", "anbn", "chorales", "file"])
def test_no_sequence_lies_in_two_splits(task, tmp_path, chorale_cache):
    from rnnsweep.data.base import sequence_hashes

    over = task_overrides(tmp_path, chorale_cache)[task]
    for size in ("small", "large"):
        dm = build_datamodule(config(*over, f"data.size={size}").data)
        dm.setup()
        hashed = [set(sequence_hashes(ds, dm.spec.per_step))
                  for ds in (dm.train_set, dm.val_set, dm.test_set)]
        assert not hashed[0] & hashed[1] and not hashed[0] & hashed[2]
        assert not hashed[1] & hashed[2]


class Leaky(TensorDataModule):
    def __init__(self, shared: int) -> None:
        super().__init__(batch_size=4)
        self.spec = TaskSpec(input_size=1, output_size=1, loss="mse")
        self.shared = shared

    def condition(self) -> dict[str, str]:
        return {"task": "leaky"}

    def build(self) -> tuple[TensorDataset, ...]:
        x = torch.arange(30, dtype=torch.float32).reshape(10, 3, 1)
        y, lengths = torch.zeros(10, 1), torch.full((10,), 3)
        val = torch.cat([x[:self.shared], x[6:8]]) if self.shared else x[6:8]
        sets = [(x[:6], 6), (val, len(val)), (x[8:], 2)]
        return tuple(TensorDataset(t, y[:n], lengths[:n]) for t, n in sets)


@pytest.mark.parametrize("shared", [1, 3])
def test_the_leak_check_refuses_a_sequence_in_two_splits(shared):
    with pytest.raises(DataError, match=f"split leak: {shared} sequences in both train and val"):
        Leaky(shared).setup()
    Leaky(0).setup()  # disjoint splits pass


def test_data_file_with_copies_across_its_own_splits(tmp_path):
    path = sines_file(tmp_path / "dup.npz", dup_across=3)
    with pytest.raises(DataError, match=r"dup.npz: identical sequences in two splits \(3 in "
                       r"both train and val\).*data.allow_duplicates=true"):
        build_datamodule(config("data=file", f"data.path={path}").data)
    allowed = build_datamodule(config("data=file", f"data.path={path}",
                                      "data.allow_duplicates=true").data)
    allowed.setup()  # kept, as asked; reported in the log
    assert len(allowed.val_set) == 15


def test_data_file_without_a_split_drops_exact_duplicates_before_splitting(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 5, 2)).astype(np.float32)
    x[60:] = x[:20]  # 20 exact copies
    y = rng.random(80).astype(np.float32)
    y[60:] = y[:20]
    np.savez(tmp_path / "copies.npz", x=x, y=y)
    dm = build_datamodule(config("data=file", f"data.path={tmp_path / 'copies.npz'}",
                                 "data.size=large").data)
    dm.setup()
    assert dm.duplicates_dropped == 20
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 60


def first_batch(dm: TensorDataModule, seed: int) -> torch.Tensor:
    dm.order_seed = order_seed(seed)
    return next(iter(dm.train_dataloader()))[0]


@pytest.mark.parametrize("task", ["adding", "anbn", "file"])
def test_the_run_seed_drives_the_data_order_and_data_seed_only_the_data(task, tmp_path):
    over = task_overrides(tmp_path, tmp_path / "unused.npz")[task]
    dm = build_datamodule(config(*over, "data.size=large").data)
    dm.setup()
    assert torch.equal(first_batch(dm, 7), first_batch(dm, 7))
    assert not torch.equal(first_batch(dm, 7), first_batch(dm, 8))
    # train_model takes the order from the run's seed (trials, re-evaluations, single runs).
    cfg = config(*over, "data.size=large", "search=none", "trainer.max_steps=10",
                 "trainer.val_check_steps=10", "trainer.num_threads=1")
    train_model(train_setup(cfg), dm, seed=11)
    assert dm.order_seed == order_seed(11)


def test_the_gap_does_not_depend_on_dropout():
    """Same weights, dropout 0.5 vs 0: the eval-mode training loss, and so the gap, agree."""
    import lightning.pytorch as pl

    results = []
    for dropout in (0.5, 0.0):
        cfg = config("experiment=smoke", "search=none", "model.num_layers=2",
                     f"model.dropout={dropout}", "trainer.num_threads=1")
        dm = build_datamodule(cfg.data)
        dm.setup()
        torch.manual_seed(0)
        module = build_module(train_setup(cfg).nodes, dm)
        if results:
            module.load_state_dict(results[0][1])
        trainer = pl.Trainer(logger=False, enable_progress_bar=False,
                             enable_model_summary=False)
        trainer.validate(module, datamodule=dm, verbose=False)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        results.append((metrics, module.state_dict()))
    (on, _), (off, _) = results
    assert on["train_loss_eval"] == off["train_loss_eval"]
    assert on["gap"] == off["gap"] == pytest.approx(on["val_loss"] - on["train_loss_eval"])


@pytest.mark.slow
def test_a_trial_of_a_two_worker_sweep_is_reproduced_by_its_reproduce_command(project, tmp_path):
    args = ["cell=lstm", "data.size=small", "experiment=smoke", "search.n_trials=4",
            "search.reeval_seeds=0", "search/pruner=none"]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [start_train(project, *args, log=log, RNNSWEEP_LOCAL_WORKERS="2")
               for log in logs]
    assert [w.wait(timeout=400) for w in workers] == [0, 0], logs[0].read_text()[-2000:]
    trials = [r for r in all_runs(mlflow_url(project)) if r.data.tags.get("role") == "trial"
              and r.data.tags.get("state") == "COMPLETE"]
    assert trials
    trial = trials[-1]
    assert trial.data.params["num_threads"] == "1"  # 2 cores shared by 2 local workers
    command = shlex.split(trial.data.tags["reproduce"])
    assert command[:2] == ["python", "train.py"] and "trainer.num_threads=1" in command
    proc = run_train(project, *command[2:], "tracking.experiment=reproduced")
    assert proc.returncode == 0, proc.stderr[-2000:]
    client = MlflowClient(tracking_uri=mlflow_url(project))
    (single,) = client.search_runs(
        [client.get_experiment_by_name("reproduced").experiment_id])
    assert single.data.metrics["best_val_loss"] == trial.data.metrics["best_val_loss"]
    assert single.data.metrics["best_step"] == trial.data.metrics["best_step"]
    assert sys.executable  # the command ran with the project's interpreter (run_train)


@pytest.mark.slow
def test_the_bundled_chorales_listed_twice_are_dropped_and_never_cross_splits(tmp_path):
    """music21's iterator lists some chorale files twice (here entries 4/308 and 22/87)."""
    from music21 import corpus

    from rnnsweep.data.chorales import (
        ChoralesDataConfig,
        ChoralesDataModule,
        chorale_names,
        drop_duplicate_rolls,
        piano_roll,
        save_cache,
    )

    listed = chorale_names()
    picks = [listed[i] for i in (0, 4, 22, 1, 87, 2, 308, 3, 5, 6)]
    assert len(set(picks)) == len(picks) - 2
    rolls = [piano_roll(corpus.parse(name)) for name in picks]
    names, kept, dropped = drop_duplicate_rolls(picks, rolls)
    assert dropped == 2 and len(kept) == 8
    # A cache written without de-duplication (as before) is de-duplicated when read.
    save_cache(tmp_path / "c.npz", picks, rolls)
    dm = ChoralesDataModule(ChoralesDataConfig(cache=str(tmp_path / "c.npz"), size="large",
                                               val_fraction=0.3, test_fraction=0.3))
    dm.setup()  # the leak check passes
    assert dm.duplicates_dropped == 2
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 8
