"""data=file: good .npz/.csv files load as the right task; malformed ones fail in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rnnsweep.data.file import FileDataConfig, FileDataModule
from rnnsweep.errors import ConfigError, DataError


def write_npz(path: Path, n: int = 60, t: int = 8, f: int = 2, **arrays) -> Path:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, t + 1, size=n)
    x = rng.normal(size=(n, t, f)).astype(np.float32)
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
    base = {"x": x, "lengths": lengths, "y": np.arange(n) % 3}
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def module(path: Path, **kw) -> FileDataModule:
    dm = FileDataModule(FileDataConfig(path=str(path), **kw))
    dm.setup()
    return dm


def test_npz_classification_with_stratified_seeded_split(tmp_path):
    dm = module(write_npz(tmp_path / "d.npz"), size="large")
    assert dm.spec.loss == "ce" and dm.spec.output_size == 3 and dm.spec.variable_length
    counts = {s: int((dm.split == s).sum()) for s in ("train", "val", "test")}
    assert counts == {"train": 42, "val": 9, "test": 9}
    for s in ("train", "val", "test"):  # stratified: every class in every split
        assert len(np.unique(dm.data.y[dm.split == s])) == 3
    x, y, lengths = dm.train_set.tensors
    assert x.shape == (42, 8, 2) and y.dtype == torch.long and lengths.max() <= 8
    assert torch.equal(module(tmp_path / "d.npz").val_set.tensors[0], dm.val_set.tensors[0])
    small = module(tmp_path / "d.npz", size="small", small_fraction=0.5)
    assert len(small.train_set) == 21
    small_rows = {tuple(r) for r in small.train_set.tensors[0].reshape(21, -1).tolist()}
    large_rows = {tuple(r) for r in x.reshape(42, -1).tolist()}
    assert small_rows <= large_rows


def test_npz_regression_with_given_split_and_multi_output(tmp_path):
    split = np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10)
    y = np.random.default_rng(1).normal(size=(60, 2))
    dm = module(write_npz(tmp_path / "r.npz", y=y, split=split, lengths=None), size="large")
    assert dm.spec.loss == "mse" and dm.spec.output_size == 2 and not dm.spec.variable_length
    assert [len(s) for s in (dm.train_set, dm.val_set, dm.test_set)] == [40, 10, 10]
    assert dm.train_set.tensors[1].shape == (40, 2)
    dm1 = module(write_npz(tmp_path / "r1.npz", y=y[:, 0], split=split), size="large")
    assert dm1.spec.output_size == 1 and dm1.train_set.tensors[1].shape == (40, 1)


def test_csv_long_format_matches_the_padded_layout(tmp_path):
    rows = []
    for sid, (length, label) in enumerate([(3, "up"), (5, "down"), (4, "up")] * 10):
        for step in range(length):
            rows.append({"sequence_id": f"s{sid}", "step": step + 1, "f1": step * 0.1,
                         "f2": float(sid), "target": label})
    path = tmp_path / "d.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    dm = module(path, size="large")
    assert dm.spec.loss == "ce" and dm.spec.input_size == 2 and dm.spec.output_size == 2
    assert dm.data.x.shape == (30, 5, 2) and sorted(set(dm.data.lengths)) == [3, 4, 5]
    i = int(np.flatnonzero(dm.data.lengths == 5)[0])
    np.testing.assert_allclose(dm.data.x[i, :, 0], [0, 0.1, 0.2, 0.3, 0.4], rtol=1e-6)
    j = int(np.flatnonzero(dm.data.lengths == 3)[0])
    assert (dm.data.x[j, 3:] == 0).all()


def csv_with(tmp_path: Path, drop_step: bool = False, **extra) -> Path:
    df = pd.DataFrame({"sequence_id": np.repeat(np.arange(20), 4), "step": np.tile(range(4), 20),
                       "v": np.arange(80.0), "target": np.repeat(np.arange(20) % 2, 4)})
    for k, v in extra.items():
        df[k] = v
    if drop_step:
        df = df.drop(index=5)
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return path


MALFORMED = {
    "missing x": (lambda p: write_npz(p, x=None), "missing array 'x'"),
    "wrong rank": (lambda p: np.savez(p, x=np.zeros((4, 5)), y=np.arange(4)), "N x T x F"),
    "lengths > T": (lambda p: write_npz(p, lengths=np.full(60, 9)), "lengths must be in 1..T=8"),
    "nan": (lambda p: write_npz(p, x=np.full((60, 8, 2), np.nan)), "NaN or inf"),
    "inf target": (lambda p: write_npz(p, y=np.full(60, np.inf)), "y contains NaN or inf"),
    "empty split": (lambda p: write_npz(p, split=np.array(["train"] * 50 + ["test"] * 10)),
                    "'val' split is empty"),
    "unknown split": (lambda p: write_npz(p, split=np.array(["train", "dev"] * 30)),
                      "unknown value 'dev'"),
    "unknown label": (lambda p: write_npz(
        p, y=np.array([0, 1] * 25 + [7] * 10),
        split=np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10)),
        "label 7 appears in the 'test' split"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_npz_raises_one_line_naming_the_file(tmp_path, case):
    make, problem = MALFORMED[case]
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(DataError) as err:
        FileDataModule(FileDataConfig(path=str(path)))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and problem in msg, msg


@pytest.mark.parametrize(("kwargs", "problem"), [
    (dict(drop_step=True), "missing or repeated steps"),
    (dict(v=[np.nan] + [1.0] * 79), "NaN"),
    (dict(split=["train"] * 80), "'val' split is empty"),
])
def test_malformed_csv_raises_one_line_naming_the_file(tmp_path, kwargs, problem):
    path = csv_with(tmp_path, **kwargs)
    with pytest.raises(DataError, match=problem) as err:
        FileDataModule(FileDataConfig(path=str(path)))
    assert str(path) in str(err.value)


def test_missing_path_or_file(tmp_path):
    with pytest.raises(ConfigError, match="data.path"):
        FileDataConfig()
    with pytest.raises(DataError, match="file not found"):
        FileDataModule(FileDataConfig(path=str(tmp_path / "nope.npz")))


def test_relative_path_resolves_against_the_project_root(tmp_path, monkeypatch):
    write_npz(tmp_path / "d.npz")
    monkeypatch.setenv("RNNSWEEP_ROOT", str(tmp_path))
    monkeypatch.chdir("/")
    assert module("d.npz").data.path == tmp_path / "d.npz"


def test_bad_file_stops_the_sweep_in_its_preflight(project, monkeypatch):
    """train.py's preflight (composes every job, builds its data module) rejects the file
    before any run or study exists; the relative path resolves against the project root."""
    from rnnsweep.preflight import preflight

    write_npz(project / "bad.npz", lengths=np.full(60, 99))
    monkeypatch.setenv("RNNSWEEP_ROOT", str(project))
    with pytest.raises(DataError, match="bad.npz: lengths must be in 1..T=8") as err:
        preflight(project / "conf", ["-m", "cell=lstm,gru", "data=file", "data.path=bad.npz",
                                     "experiment=smoke"])
    assert str(project / "bad.npz") in str(err.value)
    assert not (project / "mlruns").exists()


# -- files that are not what their name says: one line naming the file, never a traceback ----
def _good_npz_bytes(tmp_path: Path) -> bytes:
    return write_npz(tmp_path / "good.npz").read_bytes()


BROKEN_FILES = {
    "empty npz": ("d.npz", lambda good: b"", "file is empty (0 bytes)"),
    "npz cut in half": ("d.npz", lambda good: good[: len(good) // 2], "not an .npz archive"),
    "npz cut at 100 bytes": ("d.npz", lambda good: good[:100], "not an .npz archive"),
    "npz missing its end": ("d.npz", lambda good: good[:-10], "not an .npz archive"),
    "text named .npz": ("d.npz", lambda good: b"x,y\n1,2\n" * 20, "not an .npz archive"),
    "npz member damaged": ("d.npz", lambda good: good[:200] + bytes(300) + good[500:],
                           "is damaged"),
    "empty csv": ("d.csv", lambda good: b"", "file is empty (0 bytes)"),
    "csv of blank lines": ("d.csv", lambda good: b"\n\n\n", "empty CSV"),
    "csv header only": ("d.csv", lambda good: b"sequence_id,step,v,target\n",
                        "a header line but no rows"),
    "binary named .csv": ("d.csv", lambda good: good, "not a text CSV file"),
}


@pytest.mark.parametrize("case", list(BROKEN_FILES))
def test_empty_truncated_or_mislabelled_files_fail_in_one_line(tmp_path, case):
    name, content, problem = BROKEN_FILES[case]
    path = tmp_path / name
    path.write_bytes(content(_good_npz_bytes(tmp_path)))
    with pytest.raises(DataError) as err:
        FileDataModule(FileDataConfig(path=str(path)))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and problem in msg, msg


def test_a_single_npy_array_or_pickled_objects_are_named(tmp_path):
    npy = tmp_path / "one.npz"
    with open(npy, "wb") as handle:
        np.save(handle, np.zeros((4, 3, 2)))
    with pytest.raises(DataError, match="holds one .npy array, not an .npz archive"):
        FileDataModule(FileDataConfig(path=str(npy)))
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, x=np.zeros((4, 3, 2)), y=np.array([{"a": 1}] * 4, dtype=object))
    with pytest.raises(DataError, match="array 'y' holds Python objects"):
        FileDataModule(FileDataConfig(path=str(pickled)))


@pytest.mark.parametrize("target", ["dir.npz", "dir.csv", "plain_dir"])
def test_a_directory_is_named_as_one(tmp_path, target):
    (tmp_path / target).mkdir()
    with pytest.raises(DataError, match="is a directory, not a data file"):
        FileDataModule(FileDataConfig(path=str(tmp_path / target)))


@pytest.mark.parametrize(("array", "value", "index"), [
    ("x", 1e39, (5, 2, 1)),
    ("x", -3.5e38, (0, 0, 0)),
    ("x", 1e300, (59, 7, 1)),
    ("y", 1e39, (7,)),
    ("y", -1e308, (0, 1)),
])
def test_float64_beyond_float32_range_is_refused_with_its_index(tmp_path, array, value, index):
    """NaN/inf are checked after the cast to float32, the dtype training uses."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 8, 2))  # float64
    y = rng.normal(size=(60, 2) if len(index) == 2 else 60)
    (x if array == "x" else y)[index] = value
    path = write_npz(tmp_path / "big.npz", x=x, y=y, lengths=None)
    with pytest.raises(DataError) as err:
        FileDataModule(FileDataConfig(path=str(path)))
    where = f"{array}[{', '.join(map(str, index))}]"
    assert f"{where} = {value:.4g} is outside float32's range" in str(err.value), err.value


def test_float32_max_itself_is_accepted(tmp_path):
    x = np.random.default_rng(3).normal(size=(60, 8, 2))
    x[0, 0, 0] = float(np.finfo(np.float32).max)
    dm = module(write_npz(tmp_path / "edge.npz", x=x, lengths=None))
    assert np.isfinite(dm.data.x).all() and dm.data.x.dtype == np.float32


@pytest.mark.parametrize(("ids", "shown"), [
    (np.repeat(np.arange(20), 4), "sequence 1 has"),
    (np.repeat(np.arange(20) + 1000, 4).astype(np.uint32), "sequence 1001 has"),
    (np.repeat([f"s{i}" for i in range(20)], 4), "sequence 's1' has"),
])
def test_messages_show_plain_values_not_numpy_reprs(tmp_path, ids, shown):
    path = csv_with(tmp_path, drop_step=True, sequence_id=ids)
    with pytest.raises(DataError) as err:
        FileDataModule(FileDataConfig(path=str(path)))
    assert shown in str(err.value) and "np." not in str(err.value), err.value


@pytest.mark.slow
def test_a_data_file_named_with_an_apostrophe_runs_and_resumes(project):
    """The study name holds the file's stem; MLflow filters on it must quote it."""
    from conftest import query, run_train

    write_npz(project / "it's.npz")
    args = ["cell=lstm", "data=file", "data.path=\"it's.npz\"", "experiment=smoke",
            "search.n_trials=1", "search.reeval_seeds=1"]
    first = run_train(project, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    # A rerun finds the same parent run (find_parent) instead of failing or making another.
    second = run_train(project, *args)
    assert second.returncode == 0, second.stderr[-3000:]
    parents = query(project / "mlruns" / "mlflow.db",
                    "SELECT value FROM tags WHERE key = 'study_name' AND run_uuid IN "
                    "(SELECT run_uuid FROM tags WHERE key = 'role' AND value = 'study')")
    assert len(parents) == 1 and "it's" in parents[0][0], parents


def test_study_name_has_the_small_fraction_only_for_small_data(tmp_path):
    from rnnsweep.search.study import study_name

    path = write_npz(tmp_path / "d.npz")
    large = [study_name(module(path, size="large", small_fraction=f).condition(), "lstm")
             for f in (0.25, 0.5)]
    assert large[0] == large[1] and "small0" not in large[0]
    assert large[0].startswith("file-large-lstm-filed-sha") and large[0].endswith("-T8-seed1234")
    small = study_name(module(path, size="small", small_fraction=0.25).condition(), "lstm")
    assert "-small0.25-" in small and small.startswith("file-small-lstm-")


# -- a missing or wrong file is refused in train.py's first preflight pass ---------------------
BAD_FILE_ARGS = {
    "no path": (["data=file"], "data.path is missing: data=file needs data.path=<file.npz|.csv>"),
    "missing file": (["data=file", "data.path=missing.npz"],
                     "missing.npz: file not found (data.path: an .npz or a long-format .csv"),
    "text named .npz": (["-m", "cell=lstm,gru", "data=file", "data.path=text.npz"],
                        "text.npz: not an .npz archive"),
    "npz without x": (["data=file", "data.path=nox.npz"], "nox.npz: missing array 'x'"),
    "csv without columns": (["data=file", "data.path=cols.csv"],
                            "cols.csv: missing column(s) sequence_id, step, target"),
    "unsupported type": (["data=file", "data.path=data.txt"],
                         "data.txt: unsupported file type '.txt': allowed: .npz, .csv"),
}


def _bad_files(project: Path) -> None:
    (project / "text.npz").write_text("x,y\n1,2\n")
    np.savez(project / "nox.npz", y=np.arange(4))
    (project / "cols.csv").write_text("id,t,value,label\n1,0,0.5,1\n")
    (project / "data.txt").write_text("1 2 3\n")


@pytest.mark.parametrize("case", list(BAD_FILE_ARGS))
def test_a_missing_or_wrong_file_is_refused_before_torch_is_imported(project, case):
    """`python -X importtime` lists every module the interpreter imported, on stderr: the
    refusal names the file (relative paths resolve against the project root) and what is
    allowed, exits 2, and torch, Lightning, MLflow and Optuna were never imported."""
    from conftest import refused_before_heavy_imports

    argv, expected = BAD_FILE_ARGS[case]
    _bad_files(project)
    errors = refused_before_heavy_imports(project, *argv)
    assert len(errors) == 1 and errors[0].startswith("error: ") and expected in errors[0], errors
    if "data.path=" in " ".join(argv):
        assert f"error: {project}/" in errors[0]  # the file, resolved against the project root


@pytest.mark.parametrize("case", list(BAD_FILE_ARGS)[1:])
def test_the_early_probe_and_the_full_load_give_the_same_message(tmp_path, monkeypatch, case):
    """The first pass (cli.check_data_file, numpy only) and the data module's full check say
    the same thing about the same file."""
    from omegaconf import OmegaConf

    from rnnsweep.preflight import check_data_file

    argv, _ = BAD_FILE_ARGS[case]
    _bad_files(tmp_path)
    monkeypatch.setenv("RNNSWEEP_ROOT", str(tmp_path))
    path = next(a for a in argv if a.startswith("data.path=")).split("=", 1)[1]
    with pytest.raises(DataError) as early:
        check_data_file(OmegaConf.create({"data": {"task": "file", "path": path}}))
    with pytest.raises(DataError) as full:
        FileDataModule(FileDataConfig(path=path))
    assert str(early.value) == str(full.value)


def test_the_early_probe_passes_good_files_and_skips_other_tasks(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from rnnsweep.preflight import check_data_file

    monkeypatch.setenv("RNNSWEEP_ROOT", str(tmp_path))
    write_npz(tmp_path / "good.npz")
    csv_with(tmp_path).rename(tmp_path / "good.csv")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "good.csv").read_bytes())
    for name in ("good.npz", "good.csv", "bom.csv", str(tmp_path / "good.npz")):
        check_data_file(OmegaConf.create({"data": {"task": "file", "path": name}}))
    check_data_file(OmegaConf.create({"data": {"task": "adding", "path": "missing.npz"}}))
    FileDataModule(FileDataConfig(path=str(tmp_path / "bom.csv")))  # pandas agrees


def test_a_data_file_names_its_experiment_and_report_folder():
    """Two data files never share an experiment: `file-<stem>`, not `file`."""
    from omegaconf import OmegaConf

    from rnnsweep.data.registry import experiment_name

    assert experiment_name(OmegaConf.create({"task": "file", "path": "data/digits.npz"})) \
        == "file-digits"
    assert experiment_name(OmegaConf.create({"task": "adding"})) == "adding"


# Data that cannot support a comparison (rnnsweep.data.comparability): the class of input.
SPLIT = np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10)
NOT_COMPARABLE = {
    "one class": (lambda p: write_npz(p, y=np.zeros(60, dtype=int)),
                  {}, "every target is one class"),
    "constant target": (lambda p: write_npz(p, y=np.full(60, 0.5)),
                        {}, "every target is one constant value"),
    "constant inputs": (lambda p: write_npz(p, x=np.ones((60, 8, 2), np.float32), lengths=None),
                        {}, "every sequence has the same inputs"),
    "one val sequence": (lambda p: write_npz(p, split=np.array(
        ["train"] * 49 + ["val"] + ["test"] * 10)), {}, "the val split holds 1 sequence(s)"),
    "one small sequence": (lambda p: write_npz(p, split=SPLIT),
                           {"size": "small", "small_fraction": 0.01},
                           "the small split holds 1 sequence(s)"),
}


@pytest.mark.parametrize("case", list(NOT_COMPARABLE))
def test_data_that_cannot_support_a_comparison_is_refused_in_one_line(tmp_path, case):
    make, kwargs, problem = NOT_COMPARABLE[case]
    path = tmp_path / "flat.npz"
    make(path)
    with pytest.raises(DataError) as err:
        FileDataModule(FileDataConfig(path=str(path), **kwargs))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and problem in msg, msg


def test_curve_sizes_take_nested_prefixes_of_one_order(tmp_path):
    path = write_npz(tmp_path / "d.npz", split=SPLIT)
    sizes = {s: set(module(path, size=s).train_indices()) for s in ("0.25", "0.5", "1", "20")}
    assert [len(sizes[s]) for s in ("0.25", "0.5", "20", "1")] == [10, 20, 20, 40]
    assert sizes["0.25"] < sizes["0.5"] < sizes["1"] and sizes["20"] == sizes["0.5"]
    assert module(path, size="0.25").condition()["n"] == "10"
