"""A data file keeps its name and its split (issue 22, item 5): the rows of each split are an
artifact of the study's parent run that index the user's own arrays, and a data file in
the checkout does not make a run `git_dirty`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from rnnsweep.data.file import FileDataConfig, FileDataModule
from rnnsweep.provenance import SPLIT_ARTIFACT, git_state, source_changed, split_indices


def write_npz(path: Path, n: int = 80, duplicates: int = 0) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6, 2)).astype(np.float32)
    y = np.arange(n) % 2
    x[n - duplicates:], y[n - duplicates:] = x[:duplicates], y[:duplicates]
    np.savez(path, x=x, y=y)
    return path


def data_module(path: Path, size: str) -> FileDataModule:
    dm = FileDataModule(FileDataConfig(path=str(path), size=size, small_fraction=0.5))
    dm.setup()
    return dm


@pytest.mark.parametrize("size", ["small", "large"])
def test_the_rows_rebuild_every_split_from_the_users_arrays(tmp_path, size):
    path = write_npz(tmp_path / "mine.npz", duplicates=4)
    dm = data_module(path, size)
    rows = split_indices(dm)
    assert set(rows) == {"train", "val", "test", "trained_on", "dropped", "file_sha"}
    x = np.load(path)["x"]
    # Every row in exactly one place; the copies dropped before the automatic split.
    together = np.concatenate([rows[k] for k in ("train", "val", "test", "dropped")])
    assert sorted(together.tolist()) == list(range(len(x)))
    assert len(rows["dropped"]) == 4 and set(rows["dropped"]) == set(range(76, 80))
    assert set(rows["trained_on"]) <= set(rows["train"])
    if size == "small":  # data.small_fraction=0.5 of the training split
        assert len(rows["trained_on"]) == round(len(rows["train"]) * 0.5)
    else:
        assert np.array_equal(rows["trained_on"], rows["train"])
    for split, key in (("train_set", "trained_on"), ("val_set", "val"), ("test_set", "test")):
        assert np.array_equal(getattr(dm, split).tensors[0].numpy(), x[rows[key]]), split
    assert str(rows["file_sha"]) == dm.data.digest


def test_generated_tasks_have_no_rows_to_log():
    from rnnsweep.data.adding import AddingDataConfig, AddingDataModule

    assert split_indices(AddingDataModule(AddingDataConfig())) == {}


def test_the_study_run_holds_the_split_as_the_docs_load_it(tmp_path, monkeypatch):
    """find_or_create_parent logs split/indices.npz once, on the run it creates; loaded as
    docs/tasks.md shows, it indexes the file's arrays."""
    from rnnsweep.search.runner import find_or_create_parent
    from rnnsweep.tracking import Tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write_npz(tmp_path / "mine.npz")
    dm = data_module(path, "small")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracker = Tracker(OmegaConf.create({"uri": uri, "artifact_root": str(tmp_path / "art")}))
    tracker.describe_job(dm, "train.py")
    parent = find_or_create_parent(tracker, "file-mine", "file-small-gru", {"cell": "gru"},
                                   storage, "data: {task: file}\n")
    assert find_or_create_parent(tracker, "file-mine", "file-small-gru", {}, storage,
                                 "data: {task: file}\n") == parent

    # docs/tasks.md, "Reuse the split":
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("file-mine")
    study = client.search_runs([exp.experiment_id], "tags.role = 'study'")[0]
    rows = np.load(client.download_artifacts(study.info.run_id, SPLIT_ARTIFACT, str(tmp_path)))
    data = np.load(path)
    x_train, y_train = data["x"][rows["trained_on"]], data["y"][rows["trained_on"]]
    x_test = data["x"][rows["test"]]

    assert np.array_equal(x_train, dm.train_set.tensors[0].numpy())
    assert np.array_equal(y_train, dm.data.y[dm.train_indices()])
    assert np.array_equal(x_test, dm.test_set.tensors[0].numpy())
    assert [a.path for a in client.list_artifacts(parent, "split")] == [SPLIT_ARTIFACT]


# -- git_dirty: the source changed, not the folder -------------------------------------------
@pytest.mark.parametrize(("status", "dirty"), [
    ("", False),
    ("?? mine.npz\0?? data/digits.npz\0?? notes/\0", False),
    (" M src/rnnsweep/model.py\0", True),
    ("M  README.md\0", True),  # tracked, staged
    (" D conf/cell/gru.yaml\0", True),
    ("R  conf/new.yaml\0conf/old.yaml\0", True),
    ("?? src/rnnsweep/new_cell.py\0", True),
    ("?? conf/cell/\0", True),
    ("?? train.py\0", True),
    ("?? train.py.bak\0?? srcs/x.py\0", False),
])
def test_only_source_changes_make_a_run_dirty(status, dirty):
    assert source_changed(status) is dirty


def test_a_data_file_in_the_checkout_leaves_the_run_clean(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "train.py").write_text("")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    code = str(tmp_path / "src" / "pkg")
    try:
        write_npz(tmp_path / "mine.npz")  # the README's recipe: beside train.py, untracked
        (tmp_path / "data").mkdir()
        write_npz(tmp_path / "data" / "digits.npz")
        assert git_state(code)[1] is False
        git_state.cache_clear()
        (tmp_path / "src" / "pkg" / "b.py").write_text("y = 2\n")  # new, untracked code
        assert git_state(code)[1] is True
    finally:
        git_state.cache_clear()
