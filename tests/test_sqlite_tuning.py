"""Both embedded stores run in WAL mode with synchronous=NORMAL once a job has started
(rnnsweep.sqlite_tuning), and a study's trials survive the process that wrote them."""

from __future__ import annotations

import sqlite3

import mlflow
import optuna

from rnnsweep.sqlite_tuning import use_wal


def journal_mode(path) -> str:
    """A property of the file (synchronous is one of each connection)."""
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        con.close()


def test_optuna_and_mlflow_stores_are_in_wal_mode_with_normal_sync(tmp_path):
    use_wal()
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with storage.engine.connect() as con:
        assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.create_run(client.create_experiment("e"))
    client.log_metric(run.info.run_id, "m", 1.0)
    for name in ("optuna.db", "mlflow.db"):
        assert journal_mode(tmp_path / name) == "wal", name
    # A new process (a reader, the report) sees every committed trial.
    reread = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert len(reread.trials) == 2


def test_other_databases_are_left_alone(tmp_path):
    use_wal()
    con = sqlite3.connect(tmp_path / "plain.db")  # not through SQLAlchemy
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()
