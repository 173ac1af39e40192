"""What an MLflow user expects to find: the runs table on opening an experiment, the best
model of each study as an MLflow Model that loads and scores as the best trial did, the
data each run saw (train/val/test datasets), the commit it ran, and `make reproduce`."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
from conftest import ROOT, make_project_copy, new_mlflow_store
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from rnnsweep import provenance
from rnnsweep.provenance import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, git_state, source_tags
from rnnsweep.tracking import Tracker

JOB = ["cell=gru", "experiment=smoke", "data.size=small", "search.n_trials=2",
       "search.reeval_seeds=0", "search.reeval_max_seeds=0", "trainer.max_steps=20",
       "tracking.register_best=true"]


def compose_job(project: Path, job: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(project / "conf"), version_base="1.3"):
        return compose("config", overrides=job)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    """One small GRU study run in-process (pipeline.run, as a Hydra job runs it), with
    tracking.register_best=true. Returns (project, client, parent run, trial runs)."""
    from rnnsweep.pipeline import run

    project = make_project_copy(tmp_path_factory.mktemp("mlflow-usage") / "project")
    mp = pytest.MonkeyPatch()
    for key in ("MLFLOW_TRACKING_URI", "RNNSWEEP_SWEEP_ID"):
        mp.delenv(key, raising=False)
    mp.setenv("RNNSWEEP_ROOT", str(project))
    run(compose_job(project, JOB), job_overrides=JOB)
    # Logging the model sets MLflow's global URI for the call only: the next job of a -m
    # sweep in this process must still record into its configured store.
    assert "MLFLOW_TRACKING_URI" not in os.environ
    client = MlflowClient(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("adding")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags["role"] == "study")
    trials = [r for r in runs if r.data.tags["role"] == "trial"]
    yield project, client, parent, trials
    GlobalHydra.instance().clear()
    mp.undo()


# -- experiments open on the runs table ---------------------------------------------------
def test_experiment_kind_is_set_on_new_and_existing_experiments(tmp_path: Path,
                                                               monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # it would win over the config
    uri = new_mlflow_store(tmp_path / "mlflow.db")
    cfg = OmegaConf.create({"tracking": {"uri": uri, "artifact_root": str(tmp_path / "art")}})
    client = MlflowClient(uri)
    old = client.create_experiment("made-before", artifact_location=(tmp_path / "a").as_uri())
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    tracker = Tracker(cfg.tracking)
    assert tracker.experiment_id("made-before") == old
    new = tracker.experiment_id("made-now")
    for exp_id in (old, new):
        assert client.get_experiment(exp_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


# -- source ----------------------------------------------------------------------------------
def test_no_commit_outside_a_git_checkout(tmp_path: Path) -> None:
    assert git_state(str(tmp_path)) is None
    tags = source_tags("train.py", code_dir=tmp_path)
    assert tags == {"mlflow.source.name": "train.py", "mlflow.source.type": "LOCAL"}


def test_commit_and_dirty_flag_of_a_checkout(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert git_state(str(tmp_path)) == (head, False)
    git_state.cache_clear()
    (tmp_path / "a.py").write_text("x = 2\n")
    tags = source_tags("train.py", code_dir=tmp_path)
    assert tags["mlflow.source.git.commit"] == head and tags["git_dirty"] == "true"
    git_state.cache_clear()


# -- the study's runs --------------------------------------------------------------------------
@pytest.mark.slow
def test_every_run_records_its_three_splits_and_the_source(study) -> None:
    from rnnsweep.data import build_datamodule
    from rnnsweep.job import typed_config

    project, client, parent, trials = study
    assert len(trials) == 2
    cfg = typed_config(compose_job(project, JOB))
    datamodule = build_datamodule(cfg.data)
    datamodule.setup()
    expected = {}
    for split in ("train", "val", "test"):
        tensors = getattr(datamodule, f"{split}_set").tensors
        expected[split] = (provenance.tensors_digest(tensors), len(tensors[0]))
    code = git_state(str(provenance.PACKAGE_DIR))
    for run in [parent, *trials]:
        inputs = run.inputs.dataset_inputs
        by_context = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i
                      for i in inputs}
        assert sorted(by_context) == ["test", "train", "val"] and len(inputs) == 3
        for split, (digest, rows) in expected.items():
            dataset = by_context[split].dataset
            assert dataset.digest == digest
            assert dataset.name == f"adding-small-T20-n48-seed1234-{split}"
            assert json.loads(dataset.profile)["features_shape"][0] == rows
            assert '"task": "adding"' in dataset.source
        tags = run.data.tags
        assert tags["mlflow.source.name"] == str(project / "train.py")
        assert tags["mlflow.source.type"] == "LOCAL"
        if code is not None:  # the tests run from a git checkout of the project
            assert tags["mlflow.source.git.commit"] == code[0]
            assert tags["git_dirty"] == str(code[1]).lower()
    # A different size is different data: another digest for the training set.
    other = build_datamodule(typed_config(compose_job(project, [*JOB, "data.size=large"])).data)
    other.setup()
    assert provenance.tensors_digest(other.train_set.tensors) != expected["train"][0]


@pytest.mark.slow
def test_best_model_loads_and_scores_the_best_trials_test_loss(study, monkeypatch) -> None:
    import lightning.pytorch as pl

    from rnnsweep.data import build_datamodule
    from rnnsweep.job import train_setup, typed_config
    from rnnsweep.model import SequenceModel
    from rnnsweep.training import build_module

    project, client, parent, trials = study
    best = next(t for t in trials if t.info.run_id == parent.data.tags["best_trial_run_id"])
    uri = f"runs:/{parent.info.run_id}/model"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    info = mlflow.models.get_model_info(uri)
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 20, 2]
    assert info.model_id == parent.data.tags["best_model_id"]
    net = mlflow.pytorch.load_model(uri)
    assert isinstance(net, SequenceModel) and net.cell == "gru"
    assert net.rnn.hidden_size == int(best.data.params["hidden_size"])

    cfg = typed_config(compose_job(project, JOB))
    datamodule = build_datamodule(cfg.data)
    module = build_module(train_setup(cfg).nodes, datamodule)
    module.net = net
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    tested = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    assert math.isclose(tested["test_loss"], best.data.metrics["test_loss"], rel_tol=1e-5)
    assert math.isclose(tested["test_loss"], parent.data.metrics["best_test_loss"],
                        rel_tol=1e-5)


@pytest.mark.slow
def test_best_model_is_registered_with_cell_and_task(study) -> None:
    _, client, parent, _ = study
    name = parent.data.tags["study_name"]
    versions = client.search_model_versions(f"name = '{name}'")
    assert len(versions) == 1
    assert versions[0].tags["cell"] == "gru" and versions[0].tags["task"] == "adding"
    assert client.get_registered_model(name).tags["cell"] == "gru"


@pytest.mark.slow
def test_a_resumed_study_logs_no_second_model(study) -> None:
    from rnnsweep.pipeline import run

    project, client, parent, _ = study
    before = client.get_run(parent.info.run_id)
    run(compose_job(project, JOB), job_overrides=JOB)  # finished: no new trial
    again = client.get_run(parent.info.run_id)
    # This store's parent was reopened and closed: its time grew by the rerun's own, and
    # its end stays start + study_seconds (MLflow's Duration is the study's compute).
    assert again.data.metrics["study_seconds"] > before.data.metrics["study_seconds"]
    assert again.info.end_time - again.info.start_time == pytest.approx(
        again.data.metrics["study_seconds"] * 1000, abs=2)
    assert again.data.params["best_trial_number"] == again.data.tags["best_trial_number"]
    assert [m.model_id for m in again.outputs.model_outputs] == [
        parent.data.tags["best_model_id"]]
    assert again.info.status == "FINISHED"


# -- make reproduce ----------------------------------------------------------------------------
def path_without_venv() -> str:
    venv_bin = str(Path(ROOT / ".venv" / "bin").resolve())
    parts = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(p for p in parts if p and str(Path(p).resolve()) != venv_bin)


@pytest.mark.slow
def test_make_reproduce_runs_the_trial_without_an_activated_venv(study) -> None:
    project, client, parent, trials = study
    trial = next(t for t in trials if t.data.tags["state"] == "COMPLETE")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "RNNSWEEP_", "VIRTUAL_ENV"))}
    env["PATH"] = path_without_venv()
    assert shutil.which("python", path=env["PATH"]) != str(ROOT / ".venv" / "bin" / "python")
    # The project's Makefile run in the study's folder; setup is taken as done (-o): this
    # test checks the command, not an install.
    venv = ROOT / ".venv"
    proc = subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "-o",
         str(venv / ".installed"), f"VENV={venv}", "reproduce", f"RUN={trial.info.run_id}"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"reproducing run {trial.info.run_id}" in proc.stderr
    exp = client.get_experiment_by_name("adding")
    single = client.search_runs([exp.experiment_id], "tags.role = 'single'")
    assert len(single) == 1 and single[0].info.status == "FINISHED"
    # Same values, seed and threads on the same machine: the trial's best validation loss.
    assert math.isclose(single[0].data.metrics["best_val_loss"],
                        trial.data.metrics["best_val_loss"], rel_tol=1e-6)


def test_make_reproduce_without_a_run_or_a_store_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": path_without_venv()}
    env.pop("MLFLOW_TRACKING_URI", None)
    venv = ROOT / ".venv"
    base = ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "-o",
            str(venv / ".installed"), f"VENV={venv}", "reproduce"]
    proc = subprocess.run(base, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "usage: make reproduce RUN=" in proc.stderr
    proc = subprocess.run([*base, "RUN=abc"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "no MLflow store at" in proc.stderr
    assert not (tmp_path / "mlruns").exists()
