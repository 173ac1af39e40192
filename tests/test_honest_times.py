"""A study's times are its own compute (issue 22, item 3): each time its parent run is open
(its job, a resume, a seed round at the end of a sweep) adds that block's seconds to the
metrics `study_seconds` / `study_cpu_seconds`, and MLflow's Duration (end - start) shows
their sum, not the span of the sweep the parent waited through."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_project_copy
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from rnnsweep.run_lifecycle import add_to_totals, study_run
from rnnsweep.signals import Interrupted
from rnnsweep.tracking import Tracker


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracker]:
    folder = tmp_path_factory.mktemp("times")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # it would win over the config
        cfg = OmegaConf.create({"tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}",
                                             "artifact_root": str(folder / "artifacts")}})
        yield Tracker(cfg.tracking)


def busy(seconds: float) -> None:
    """Compute (CPU time too), not a sleep."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


@pytest.mark.slow  # trains or runs a study in-process for seconds
def test_a_reopened_parent_counts_only_the_time_it_worked(tracker):
    client = MlflowClient(tracker.uri)
    started = time.monotonic()
    parent = tracker.start_run("exp", "study", {"role": "study"})
    with study_run(tracker, parent, lambda err: None):  # the study's job
        busy(0.3)
    time.sleep(1.0)  # the sweep's other studies run
    tracker.reopen(parent)  # a seed round at the end of the sweep
    with study_run(tracker, parent, lambda err: None):
        busy(0.2)
    span = time.monotonic() - started
    run = client.get_run(parent)
    metrics = run.data.metrics
    parts = [m.value for m in client.get_metric_history(parent, "parts/study_seconds")]
    assert len(parts) == 2 and parts[0] >= 0.3 and parts[1] >= 0.2
    assert metrics["study_seconds"] == pytest.approx(sum(parts))
    # the two blocks' work, never the 1 s between them (wall time: a loaded machine may
    # stretch each block, so the bound is the span less the pause, not a fixed figure)
    assert 0.5 <= metrics["study_seconds"] <= span - 1.0
    assert 0 < metrics["study_cpu_seconds"] <= metrics["study_seconds"] + 0.2
    # MLflow's Duration is the compute, not the 1.5 s span from creation to the last close.
    duration = (run.info.end_time - run.info.start_time) / 1000
    assert duration == pytest.approx(metrics["study_seconds"], abs=0.002)
    assert run.info.status == "FINISHED"


@pytest.mark.parametrize(("raised", "status"), [(ValueError("boom"), "FAILED"),
                                                (Interrupted(2), "KILLED")])
def test_a_study_that_stops_still_records_its_seconds(tracker, raised, status):
    client = MlflowClient(tracker.uri)
    parent = tracker.start_run("exp", "study", {"role": "study"})
    with pytest.raises(type(raised)), study_run(tracker, parent, lambda err: None):
        busy(0.1)
        raise raised
    run = client.get_run(parent)
    assert run.info.status == status and run.data.metrics["study_seconds"] >= 0.1


def test_totals_add_up_every_part(tracker):
    parent = tracker.start_run("exp", "study", {"role": "study"})
    for amount in (1.5, 2.25, 0.25):
        totals = add_to_totals(tracker, parent, {"search_seconds": amount})
    assert totals == {"search_seconds": 4.0}
    assert MlflowClient(tracker.uri).get_run(parent).data.metrics["search_seconds"] == 4.0


# -- a study's job, then a seed round at the end of its sweep, in-process --------------------
JOB = ["cell=gru", "experiment=smoke", "data.size=small", "search.n_trials=2",
       "search.reeval_seeds=1", "search.reeval_max_seeds=2", "trainer.max_steps=20"]


def compose_job(project: Path, job: list[str]):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(project / "conf"), version_base="1.3"):
            return compose("config", overrides=job)
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.slow
def test_a_seed_round_at_the_end_of_a_sweep_adds_only_its_own_time(tmp_path, monkeypatch):
    from rnnsweep.job import add_seeds
    from rnnsweep.pipeline import run

    project = make_project_copy(tmp_path / "project")
    for key in ("MLFLOW_TRACKING_URI", "RNNSWEEP_SWEEP_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RNNSWEEP_ROOT", str(project))
    cfg = compose_job(project, JOB)
    run(cfg, job_overrides=JOB)
    client = MlflowClient(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("adding")
    parent = client.search_runs([exp.experiment_id], "tags.role = 'study'")[0]
    after_job = parent.data.metrics
    time.sleep(3.0)  # the sweep's other studies
    add_seeds(client, parent, cfg, 2)
    again = client.get_run(parent.info.run_id)
    metrics = again.data.metrics
    parts = client.get_metric_history(parent.info.run_id, "parts/study_seconds")
    assert len(parts) == 2 and again.info.status == "FINISHED"
    assert metrics["study_seconds"] > after_job["study_seconds"]
    assert metrics["study_cpu_seconds"] > after_job["study_cpu_seconds"]
    assert 0 < metrics["search_seconds"] < metrics["study_seconds"]
    duration = (again.info.end_time - again.info.start_time) / 1000
    span = time.time() - again.info.start_time / 1000
    assert duration == pytest.approx(metrics["study_seconds"], abs=0.002)
    assert duration < span - 2.5  # the wait between the job and its seed round is not in it
    # The best hyperparameters as params too (the search completed), and which trial.
    params, tags = again.data.params, again.data.tags
    best = {k: v for k, v in tags.items() if k.startswith("best.")}
    assert best and {k: params[k] for k in best} == best
    assert params["best_trial_number"] == tags["best_trial_number"]
