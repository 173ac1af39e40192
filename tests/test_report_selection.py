"""`make report` with no arguments reports the sweep run last, whatever its task."""

from __future__ import annotations

import time

from conftest import new_mlflow_store
from mlflow.tracking import MlflowClient

from rnnsweep.report.__main__ import latest_experiment


def test_the_latest_run_of_any_task_picks_the_experiment(tmp_path):
    uri = new_mlflow_store(tmp_path / "mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    assert latest_experiment(uri) is None
    for task in ("adding", "anbn"):
        exp = client.create_experiment(task, artifact_location=(tmp_path / task).as_uri())
        client.create_run(exp, tags={"role": "study"})
        time.sleep(0.01)
    assert latest_experiment(uri) == "anbn"
    # A later report run is not a sweep; a later trial of adding is.
    client.create_run(client.get_experiment_by_name("adding").experiment_id,
                      tags={"role": "report"})
    assert latest_experiment(uri) == "anbn"
    time.sleep(0.01)
    client.create_run(client.get_experiment_by_name("adding").experiment_id,
                      tags={"role": "trial"})
    assert latest_experiment(uri) == "adding"
