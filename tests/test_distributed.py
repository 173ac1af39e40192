"""Distributed mode with the real servers: PostgreSQL for Optuna and for an MLflow tracking
server, two worker processes on one study. Also the redaction check: the database password
is really set, and must not appear in any store, artifact, log file or console output.

PostgreSQL comes from Debian's `postgresql` binaries (`make test` installs them); without them
the test is skipped locally and fails in CI (CI=true).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient
from servers import PG_USER, free_port, postgres_cluster, serve
from store_checks import all_runs, check_no_loss, start_train

SECRET = "s3cretpw"
USER = PG_USER
N_TRIALS = 4


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway server on 127.0.0.1; yields postgresql://user:pw@host:port."""
    with postgres_cluster(SECRET, ("optuna", "mlflow")) as url:
        yield url


@pytest.fixture(scope="module")
def tracking_server(
    postgres: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """`mlflow server` with the PostgreSQL backend store and a local artifact destination."""
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server",
           "--backend-store-uri", f"{postgres}/mlflow", "--artifacts-destination", str(artifacts),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # No background job runner (it only serves GenAI features).
    with serve(cmd, f"{uri}/health", artifacts.parent / "mlflow-server.log", artifacts.parent,
               timeout=180, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"):
        yield uri, artifacts


def grep_tree(root: Path, needle: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


@pytest.mark.slow
def test_two_workers_share_a_study_on_postgres_and_a_tracking_server(
    postgres, tracking_server, project, tmp_path
):
    uri, artifacts = tracking_server
    storage = f"{postgres}/optuna"
    args = ["cell=lstm", "experiment=smoke", f"search.n_trials={N_TRIALS}", "search.reeval_seeds=0",
            f"search.storage={storage}"]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [start_train(project, *args, log=log, MLFLOW_TRACKING_URI=uri) for log in logs]
    codes = [w.wait(timeout=400) for w in workers]
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n".join(t[-2000:] for t in texts)

    check_no_loss(storage, uri, N_TRIALS, n_studies=1)
    assert not (project / "mlruns").exists()  # nothing went to the embedded stores

    # Redaction: the password is in no console output, Hydra output file (logs, saved
    # overrides), MLflow param, tag or artifact; the logged config shows it masked.
    assert all(SECRET not in text for text in texts)
    assert list((project / "outputs").rglob("*.log"))
    assert grep_tree(project / "outputs", SECRET) == []
    runs = all_runs(uri)
    assert all(SECRET not in repr(r.data.params) + repr(r.data.tags) for r in runs)
    assert grep_tree(artifacts, SECRET) == []
    parent = next(r for r in runs if r.data.tags["role"] == "study")
    config = MlflowClient(tracking_uri=uri).download_artifacts(
        parent.info.run_id, "config.yaml", str(tmp_path))
    assert f"{USER}:***@127.0.0.1" in Path(config).read_text()


def test_unreachable_storage_fails_in_one_redacted_line_and_creates_nothing(project):
    url = f"postgresql://{USER}:{SECRET}@127.0.0.1:{free_port()}/optuna"
    proc = run_train(project, "experiment=smoke", f"search.storage={url}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: search.storage="), proc.stderr
    assert "***@127.0.0.1" in lines[0] and SECRET not in proc.stdout + proc.stderr
    assert not (project / "mlruns").exists() and not (project / "outputs").exists()


def test_unreachable_tracking_server_fails_in_one_line(project):
    uri = f"http://127.0.0.1:{free_port()}"
    proc = run_train(project, "experiment=smoke", MLFLOW_TRACKING_URI=uri)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: MLFLOW_TRACKING_URI={uri}")
    assert not (project / "mlruns").exists()
