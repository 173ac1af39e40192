"""Each task end to end: a smoke sweep with every cell fills MLflow with one study per cell."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient

CELLS = ("rnn", "lstm", "gru")
CHEAP = ("experiment=smoke", "data.size=small", "search.n_trials=2", "search.reeval_seeds=0")


def parents_and_trials(project: Path, experiment: str):
    c = MlflowClient(tracking_uri=f"sqlite:///{project}/mlruns/mlflow.db")
    exp = c.get_experiment_by_name(experiment)
    parents = c.search_runs([exp.experiment_id], "tags.role = 'study'", max_results=100)
    trials = c.search_runs([exp.experiment_id], "tags.role = 'trial'", max_results=1000)
    return parents, trials


def write_sequences(path: Path) -> None:
    """A learnable file task: is the sum of a variable-length sequence positive?"""
    rng = np.random.default_rng(0)
    n, t = 90, 12
    lengths = rng.integers(4, t + 1, size=n)
    x = rng.normal(size=(n, t, 1)).astype(np.float32)
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
    np.savez(path, x=x, lengths=lengths, y=(x.sum((1, 2)) > 0).astype(np.int64))


def setup_task(task: str, project: Path, chorale_cache: Path) -> list[str]:
    if task == "chorales":
        (project / "data" / "cache").mkdir(parents=True)
        shutil.copy(chorale_cache, project / "data" / "cache" / "chorales.npz")
        return []
    if task == "file":
        write_sequences(project / "seqs.npz")
        return ["data.path=seqs.npz"]  # relative: resolves against the project root
    return []


TASK_METRICS = {"anbn": "test_count_limit", "chorales": "test_frame_acc", "file": "test_acc"}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASK_METRICS))
def test_smoke_sweep_runs_every_cell(task, project, chorale_cache):
    extra = setup_task(task, project, chorale_cache)
    proc = run_train(project, "-m", f"cell={','.join(CELLS)}", f"data={task}", *CHEAP, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parents, trials = parents_and_trials(project, task)
    assert sorted(p.data.tags["cell"] for p in parents) == sorted(CELLS)
    for p in parents:
        assert p.info.status == "FINISHED" and p.data.tags["task"] == task
        assert p.data.tags["study_name"].startswith(f"{task}-small-{p.data.tags['cell']}-")
        mine = [t for t in trials if t.data.tags["mlflow.parentRunId"] == p.info.run_id]
        assert len(mine) == 2
        complete = [t for t in mine if t.data.tags["state"] == "COMPLETE"]
        assert complete, [t.data.tags for t in mine]
        for t in complete:
            assert np.isfinite(t.data.metrics["test_loss"])
            assert TASK_METRICS[task] in t.data.metrics
    if task == "anbn":  # the count limit starts right after the smoke training range
        limits = [t.data.metrics["test_count_limit"] for t in trials
                  if "test_count_limit" in t.data.metrics]
        assert all(5 <= v <= 31 for v in limits)


@pytest.mark.slow
def test_adding_lengths_are_separate_studies_tagged_with_T(project):
    proc = run_train(project, "-m", "cell=rnn", "data.seq_len=10,20", *CHEAP)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parents, _ = parents_and_trials(project, "adding")
    assert sorted(p.data.tags["data.T"] for p in parents) == ["10", "20"]
    names = {p.data.tags["study_name"] for p in parents}
    assert len(names) == 2 and all("-T10-" in n or "-T20-" in n for n in names)
