"""load_sweep on a small MLflow store: the latest sweep is chosen by its latest run, and an
older sweep whose study was resumed later is reported as it stood."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from conftest import new_mlflow_store
from mlflow.tracking import MlflowClient

from rnnsweep.report.collect import load_sweep

SEARCH = {"search": {"metric": "val_loss", "direction": "minimize",
                     "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}}}


def _run(client: MlflowClient, exp: str, tags: dict, parent: str | None = None,
         metrics: dict | None = None) -> str:
    if parent:
        tags = {**tags, "mlflow.parentRunId": parent}
    run = client.create_run(exp, tags=tags)
    for k, v in (metrics or {}).items():
        client.log_metric(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id, "FINISHED")
    time.sleep(0.01)  # distinct start times
    return run.info.run_id


@pytest.fixture()
def store(tmp_path: Path) -> tuple[str, dict]:
    uri = new_mlflow_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp = client.create_experiment("adding", artifact_location=str(tmp_path / "art"))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(SEARCH))
    ids: dict = {}
    base = {"cell": "lstm", "data_size": "small", "study_name": "adding-small-lstm"}
    # sweep s1: parent (later re-tagged by s2's resume), two trials, a re-evaluation
    ids["p"] = _run(client, exp, {**base, "role": "study", "sweep_id": "s1",
                                  "best_trial_number": "1"})
    client.log_artifact(ids["p"], str(cfg))
    for k, v in ((0, 0.3), (1, 0.2)):
        _run(client, exp, {**base, "role": "trial", "sweep_id": "s1", "state": "COMPLETE",
                           "trial_number": str(k)}, ids["p"], {"best_val_loss": v})
    _run(client, exp, {**base, "role": "reeval", "sweep_id": "s1", "best_trial_number": "1",
                       "state": "COMPLETE"}, ids["p"], {"test_loss": 0.25})
    # another study in sweep s3, started before s2 resumes the first one
    other = {**base, "cell": "gru", "study_name": "adding-small-gru"}
    ids["q"] = _run(client, exp, {**other, "role": "study", "sweep_id": "s3",
                                  "best_trial_number": "0"})
    client.log_artifact(ids["q"], str(cfg))
    # sweep s2 resumes the first study: the parent is re-tagged, a new best trial 2
    client.set_tag(ids["p"], "sweep_id", "s2")
    client.set_tag(ids["p"], "best_trial_number", "2")
    _run(client, exp, {**base, "role": "trial", "sweep_id": "s2", "state": "COMPLETE",
                       "trial_number": "2"}, ids["p"], {"best_val_loss": 0.1})
    return uri, ids


def test_latest_and_older_sweeps(store: tuple[str, dict]) -> None:
    uri, ids = store
    latest = load_sweep(uri, "adding")
    assert latest.sweep_id == "s2"  # its trial started last, though its parent is older
    assert list(latest.parents["run_id"]) == [ids["p"]]
    assert len(latest.trials) == 3
    old = load_sweep(uri, "adding", "s1")
    assert len(old.trials) == 2 and len(old.reevals) == 1  # the resume is left out
    assert old.parents.loc[0, "tags.best_trial_number"] == "1"
    assert bool(old.parents.loc[0, "resumed_later"])
    assert load_sweep(uri, "adding", "s3").parents["tags.cell"].tolist() == ["gru"]
