"""`make reproduce` reads a run's `reproduce` tag as data: on a shared MLflow server anyone can
write tags, so a hostile tag must never run anything on the machine that reproduces it.

Every hostile tag below is planted on a real run in a throwaway SQLite MLflow store and fed
to `rnnsweep.reproduce.main` without --dry-run: each must exit 2 with one stderr line, start
no process, and leave the marker file it tries to create absent. The project's own tags (as
`reproduce_command` writes them) pass and print this interpreter running this checkout's
train.py.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import make_project_copy, new_mlflow_store
from mlflow.tracking import MlflowClient

from rnnsweep import reproduce

ROOT = Path(__file__).resolve().parents[1]
# What the run "logged": the sampled values and the seed, as run_parameters names them.
PARAMS = {"num_layers": "1", "hidden_size": "8", "dropout": "0.0", "lr": "0.001", "seed": "0",
          "num_threads": "1", "data.seed": "1234"}
LEGIT = ("python train.py search=none data.size=small cell=lstm model.num_layers=1 "
         "model.hidden_size=8 model.dropout=0.0 optim.lr=0.001 seed=0 trainer.num_threads=1")
# {marker}: a file the tag tries to create; {tmp}: a folder outside the project.
HOSTILE = {
    "another program": "bash -c 'touch {marker}'",
    "python -c": "python -c 'open(\"{marker}\", \"w\")'",
    "python -m": "python -m this",
    "another train.py": "python {tmp}/other/train.py search=none",
    "a relative path to train.py": "python ./train.py search=none",
    "env prefix": "env X=1 python train.py search=none",
    "hydra callback": "python train.py hydra.callbacks.x._target_=os.system",
    "hydra env_set": "python train.py +hydra.job.env_set.X=1",
    "hydra launcher": "python train.py search=none hydra/launcher=joblib",
    "hydra run dir": "python train.py search=none hydra.run.dir={tmp}/out",
    "package override": "python train.py search=none cell@hydra.job=lstm",
    "_target_": "python train.py optim._target_=builtins.exec",
    "_partial_": "python train.py search=none +optim._partial_=true",
    "interpolation": "python train.py cell.name='${{oc.env:HOME}}'",
    "tracking.uri": "python train.py search=none tracking.uri=sqlite:///{tmp}/evil.db",
    "tracking group": "python train.py search=none tracking=local",
    "paths.root": "python train.py search=none paths.root={tmp}",
    "shell ;": "python train.py search=none; touch {marker}",
    "shell &&": f"{LEGIT} && touch {{marker}}",
    "shell $()": "python train.py search=none cell.name=$(touch {marker})",
    "shell >": f"{LEGIT} > {{marker}}",
    "multirun flag": "python train.py -m search=none cell=lstm,gru",
    "--cfg": "python train.py --cfg job",
    "not an override": "python train.py search=none touch {marker}",
    "unclosed quote": "python train.py 'search=none",
    "a study": LEGIT.replace("search=none", "search=tpe"),
    "search.name": f"{LEGIT} search.name=tpe",
    "search.study": f"{LEGIT} search.study=true",
    "hidden_size differs": LEGIT.replace("model.hidden_size=8", "model.hidden_size=9"),
    "lr differs": LEGIT.replace("optim.lr=0.001", "optim.lr=0.5"),
    "seed differs": LEGIT.replace("seed=0", "seed=7"),
    "data seed differs": f"{LEGIT} data.seed=7",
    "hidden_size left to its default": LEGIT.replace(" model.hidden_size=8", ""),
    "search space path remapped": LEGIT.replace("model.hidden_size=8", "model.hidden_size=64")
    + " search.space.hidden_size.path=model.num_layers",
    "unknown key": f"{LEGIT} model.hidden_sise=8",
    "key with a leading space": f"{LEGIT} ' hydra.run.dir={{tmp}}/out'",
    "a sweep without -m": LEGIT.replace("cell=lstm", "cell=lstm,gru"),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(tracking URI, run id): one real run with PARAMS logged, its tag set per test."""
    folder = tmp_path_factory.mktemp("store")
    uri = new_mlflow_store(folder / "mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("adding", artifact_location=str(folder / "art"))
    run = client.create_run(experiment, run_name="trial-000")
    for key, value in PARAMS.items():
        client.log_param(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    return uri, run.info.run_id


@pytest.fixture
def tracked(store: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    """The store as MLFLOW_TRACKING_URI, run from the project folder (as `make reproduce`)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store[0])
    monkeypatch.delenv("RNNSWEEP_ROOT", raising=False)
    monkeypatch.chdir(ROOT)
    yield MlflowClient(tracking_uri=store[0])


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every command reproduce starts (still started for real: a hostile one leaves its mark)."""
    calls: list[list[str]] = []
    real = reproduce.subprocess.call

    def spy(command: list[str], **kwargs: object) -> int:
        calls.append(list(command))
        return real(command, **kwargs)

    monkeypatch.setattr(reproduce.subprocess, "call", spy)
    return calls


@pytest.mark.parametrize("tag", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_tag_is_refused_in_one_line_and_runs_nothing(
        tag: str, store: tuple[str, str], tracked: MlflowClient, started: list[list[str]],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    other = tmp_path / "other" / "train.py"
    other.parent.mkdir()
    other.write_text(f"open({str(marker)!r}, 'w')\n")
    run_id = store[1]
    tracked.set_tag(run_id, "reproduce", tag.format(marker=marker, tmp=tmp_path))

    code = reproduce.main([run_id])

    err = capsys.readouterr().err
    assert code == 2, err
    assert started == []
    assert not marker.exists()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"make reproduce: run {run_id}: "), err
    assert "; allowed: python train.py key=value" in lines[0]


def test_a_mismatch_names_the_key_and_the_logged_value(
        store: tuple[str, str], tracked: MlflowClient, capsys: pytest.CaptureFixture[str]) -> None:
    tracked.set_tag(store[1], "reproduce", HOSTILE["hidden_size differs"])
    assert reproduce.main([store[1]]) == 2
    assert "model.hidden_size=9 in the tag, but the run logged hidden_size=8" in (
        capsys.readouterr().err)


def dry_run_command(run_id: str, capsys: pytest.CaptureFixture[str],
                    source: str | None = None) -> list[str]:
    """The command --dry-run prints; `source`: the run whose tag it is (a study's trial)."""
    assert reproduce.main([run_id, "--dry-run"]) == 0, capsys.readouterr().err
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith(f"reproducing run {source or run_id}: "), line
    return shlex.split(line.split(": ", 1)[1])


def test_a_legit_tag_runs_this_interpreter_on_this_checkouts_train_py(
        store: tuple[str, str], tracked: MlflowClient, started: list[list[str]],
        capsys: pytest.CaptureFixture[str]) -> None:
    tracked.set_tag(store[1], "reproduce", LEGIT)
    command = dry_run_command(store[1], capsys)
    assert command[:2] == [sys.executable, str(ROOT / "train.py")]
    assert command[2:] == shlex.split(LEGIT)[2:]
    assert started == []


def test_the_project_is_the_current_folder_else_this_package_checkout(
        store: tuple[str, str], tracked: MlflowClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`make reproduce` in a project folder (train.py and conf/, e.g. a copy) runs that
    folder's train.py, the one beside the mlruns/ it reads; elsewhere, this package's."""
    tracked.set_tag(store[1], "reproduce", LEGIT)
    copy = make_project_copy(tmp_path / "copy")
    monkeypatch.chdir(copy)
    assert dry_run_command(store[1], capsys)[1] == str(copy.resolve() / "train.py")
    monkeypatch.chdir(tmp_path)
    assert dry_run_command(store[1], capsys)[1] == str(ROOT / "train.py")


def test_the_tag_reproduce_command_writes_passes(
        store: tuple[str, str], tracked: MlflowClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The producer's own format: job overrides, sampled values (repr), seed, threads; a
    shared study's storage URL (password masked) is dropped: a single run never opens it."""
    from rnnsweep.job import train_setup
    from rnnsweep.search.objective import reproduce_command

    cfg = reproduce.compose_config(ROOT / "conf", ["trainer.num_threads=1"])
    ctx = SimpleNamespace(search=cfg.search, setup=train_setup(cfg), job_overrides=[
        "cell=lstm", "data.size=small", "search.storage=postgresql://alice:s3cret@db/optuna"])
    values = {"num_layers": 1, "hidden_size": 8, "dropout": 0.0, "lr": 0.001}
    tag = reproduce_command(ctx, values, seed=0)  # type: ignore[arg-type]
    assert "alice:***@db" in tag and "s3cret" not in tag
    tracked.set_tag(store[1], "reproduce", tag)

    assert reproduce.main([store[1], "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "dropped 'search.storage=postgresql://alice:***@db/optuna'" in err
    command = shlex.split(err.splitlines()[-1].split(": ", 1)[1])
    assert command[:2] == [sys.executable, str(ROOT / "train.py")]
    assert not any(w.startswith("search.storage") for w in command)
    assert "model.hidden_size=8" in command and "seed=0" in command
    assert "trainer.num_threads=1" in command


def test_a_study_run_is_checked_against_its_best_trials_params(
        store: tuple[str, str], tracked: MlflowClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    trial = tracked.get_run(store[1])
    parent = tracked.create_run(trial.info.experiment_id, run_name="study",
                                tags={"best_trial_run_id": store[1]}).info.run_id
    tracked.set_tag(store[1], "reproduce", LEGIT)
    assert dry_run_command(parent, capsys, source=store[1])[1] == str(ROOT / "train.py")
    tracked.set_tag(store[1], "reproduce", HOSTILE["seed differs"])
    assert reproduce.main([parent, "--dry-run"]) == 2
    assert "seed=7 in the tag, but the run logged seed=0" in capsys.readouterr().err


def test_the_command_line_exits_2_on_a_hostile_tag(
        store: tuple[str, str], tracked: MlflowClient, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    tracked.set_tag(store[1], "reproduce", f"bash -c 'touch {marker}'")
    proc = subprocess.run([sys.executable, "-m", "rnnsweep.reproduce", store[1]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and not marker.exists()
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "runs bash, not python" in proc.stderr
