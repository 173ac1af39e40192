"""Each task end to end: a smoke sweep with every cell fills MLflow with one study per cell.

One real `train.py -m` run (data=file, which also checks path resolution and the preflight);
the other tasks call pipeline.run in-process on one shared project, which skips the
interpreter start-up and store creation per task and keeps this file near a minute.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_project_copy, run_train
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient

CELLS = ("rnn", "lstm", "gru")
N_TRIALS = 1
CHEAP = ["experiment=smoke", "data.size=small", f"search.n_trials={N_TRIALS}",
         "search.reeval_seeds=0", "trainer.max_steps=20"]
TASK_METRICS = {"anbn": "test_count_limit", "chorales": "test_frame_acc", "file": "test_acc"}


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


def check_studies(project: Path, task: str, cells=CELLS, experiment: str | None = None) -> list:
    parents, trials = parents_and_trials(project, experiment or task)
    assert sorted(p.data.tags["cell"] for p in parents) == sorted(cells)
    for p in parents:
        assert p.info.status == "FINISHED" and p.data.tags["task"] == task
        assert p.data.tags["study_name"].startswith(f"{task}-small-{p.data.tags['cell']}-")
        mine = [t for t in trials if t.data.tags["mlflow.parentRunId"] == p.info.run_id]
        assert len(mine) == N_TRIALS
        complete = [t for t in mine if t.data.tags["state"] == "COMPLETE"]
        assert complete, [t.data.tags for t in mine]
        for t in complete:
            assert np.isfinite(t.data.metrics["test_loss"])
            if task in TASK_METRICS:
                assert TASK_METRICS[task] in t.data.metrics
    return trials


@pytest.fixture(scope="module")
def inproc(tmp_path_factory, chorale_cache):
    """A project copy and a runner calling pipeline.run for one composed job at a time."""
    from rnnsweep.pipeline import run

    project = make_project_copy(tmp_path_factory.mktemp("tasks") / "project")
    (project / "data" / "cache").mkdir(parents=True)
    shutil.copy(chorale_cache, project / "data" / "cache" / "chorales.npz")
    mp = pytest.MonkeyPatch()
    for key in ("MLFLOW_TRACKING_URI", "RNNSWEEP_SWEEP_ID"):
        mp.delenv(key, raising=False)
    mp.setenv("RNNSWEEP_ROOT", str(project))

    def sweep(*overrides: str, cells: tuple[str, ...] = CELLS) -> None:
        for cell in cells:
            job = [f"cell={cell}", *CHEAP, *overrides]
            GlobalHydra.instance().clear()
            with initialize_config_dir(str(project / "conf"), version_base="1.3"):
                cfg = compose("config", overrides=job)
            run(cfg, job_overrides=job)

    yield project, sweep
    GlobalHydra.instance().clear()
    mp.undo()


@pytest.mark.slow
def test_anbn_with_every_cell_reports_the_count_limit(inproc):
    project, sweep = inproc
    sweep("data=anbn")
    trials = check_studies(project, "anbn")
    # smoke: trained on n = 1..4, checked up to 30; the limit is 0 (the training range is
    # not predicted exactly) or the first failing n past it (31 if none up to 30).
    limits = [(t.data.metrics["test_count_limit"], t.data.metrics["test_train_range_exact"])
              for t in trials if "test_count_limit" in t.data.metrics]
    assert limits
    for limit, exact in limits:
        assert (limit == 0 and exact == 0) or (5 <= limit <= 31 and exact == 1)
    parents, _ = parents_and_trials(project, "anbn")
    assert all("best_test_count_limit" in p.data.metrics for p in parents)


def frame_accuracy(net, datamodule) -> float:
    """TP / (TP + FP + FN) over the real steps of the test set, from the net's own outputs
    (a note is predicted when its logit is positive)."""
    import torch

    tp = err = 0
    net.eval()
    with torch.no_grad():
        for x, y, lengths in datamodule.test_dataloader():
            out = net(x, lengths)
            real = torch.arange(x.shape[1])[None, :] < lengths[:, None]
            pred, truth = out[real] > 0, y[real] > 0.5
            tp += int((pred & truth).sum())
            err += int((pred ^ truth).sum())
    return tp / (tp + err) if tp + err else 1.0


@pytest.mark.slow
def test_chorales_with_every_cell(inproc, monkeypatch):
    """The frame accuracy each study reports is that of its logged best model, recomputed
    here from the model's predictions on the test set."""
    import mlflow.pytorch

    from rnnsweep.data import build_datamodule
    from rnnsweep.job import typed_config

    project, sweep = inproc
    sweep("data=chorales")
    trials = check_studies(project, "chorales")
    assert all("test_frame_acc" in t.data.metrics
               for t in trials if t.data.tags["state"] == "COMPLETE")
    parents, _ = parents_and_trials(project, "chorales")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project}/mlruns/mlflow.db")
    for p in parents:
        net = mlflow.pytorch.load_model(f"runs:/{p.info.run_id}/model")
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(project / "conf"), version_base="1.3"):
            cfg = typed_config(compose("config", overrides=[
                f"cell={p.data.tags['cell']}", *CHEAP, "data=chorales"]))
        datamodule = build_datamodule(cfg.data)
        datamodule.setup()
        acc = frame_accuracy(net, datamodule)
        assert acc == pytest.approx(p.data.metrics["best_test_frame_acc"], abs=1e-6), p.info


@pytest.mark.slow
def test_adding_lengths_are_separate_studies_tagged_with_T(inproc):
    project, sweep = inproc
    # rnn only: the shared smoke sweep already runs lstm and gru on the adding problem.
    for seq_len in (10, 20):
        sweep(f"data.seq_len={seq_len}", cells=("rnn",))
    parents, _ = parents_and_trials(project, "adding")
    by_t: dict[str, set[str]] = {}
    for p in parents:
        by_t.setdefault(p.data.tags["data.T"], set()).add(p.data.tags["study_name"])
    assert sorted(by_t) == ["10", "20"]
    assert all(len(names) == 1 for names in by_t.values())
    assert not by_t["10"] & by_t["20"]


@pytest.mark.slow
def test_file_task_through_train_py_with_every_cell(project):
    write_sequences(project / "seqs.npz")
    # A relative data.path resolves against the project root, not Hydra's job directory.
    proc = run_train(project, "-m", f"cell={','.join(CELLS)}", "data=file",
                     "data.path=seqs.npz", *CHEAP)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The data file names the experiment: file-<stem>.
    check_studies(project, "file", experiment="file-seqs")
