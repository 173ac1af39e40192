"""A shared tracking server behind MLflow's own login: `mlflow server --app-name basic-auth`
(docs/scaling-out.md, step 2), for real.

A study whose worker passes MLFLOW_TRACKING_USERNAME/_PASSWORD runs to the end with nothing
lost, and the password is in no console output, output file, param or tag; a client with no
credentials, or a wrong password, is refused in one line before anything runs; and the server
itself refuses an unauthenticated write (and another user's write) of a run's tag.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient
from servers import free_port, serve
from store_checks import all_runs, check_no_loss, optuna_url

ADMIN, ADMIN_SECRET = "admin", "adm1n-S3cret-pw"
USER, SECRET = "alice", "al1ce-S3cret-pw"
OTHER, OTHER_SECRET = "bob", "b0b-S3cret-pw-x"
WRONG = "wr0ng-Passw0rd-x"
N_TRIALS = 2


def _basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def api(uri: str, path: str, body: dict | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, str]:
    """(HTTP status, body) of a GET, or of a JSON POST when `body` is given."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/{path}", data=data, method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`mlflow server --app-name basic-auth`: a sqlite backend store and user database in a
    temp dir, its admin's password set in the auth config (MLflow ships none), and two
    ordinary users made through the auth REST API. Yields (uri, server folder)."""
    base = tmp_path_factory.mktemp("mlflow-auth")
    config = base / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{base}/basic_auth.db\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {ADMIN_SECRET}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # A good login is checked once (scrypt, ~0.1 s a time), not on each of a study's
        # hundreds of requests; a wrong one still is every time.
        "auth_cache_ttl_seconds = 600\n")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth",
           "--backend-store-uri", f"sqlite:///{base}/mlflow.db",
           "--artifacts-destination", str(base / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # No background job runner (it only serves GenAI features); the auth app's CSRF
    # protection (its sign-up page) wants a fixed secret key.
    with serve(cmd, f"{uri}/health", base / "server.log", base, timeout=180,
               MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
               MLFLOW_AUTH_CONFIG_PATH=str(config),
               MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16)):
        for user, password in ((USER, SECRET), (OTHER, OTHER_SECRET)):
            status, body = api(uri, "users/create", {"username": user, "password": password},
                               _basic(ADMIN, ADMIN_SECRET))
            assert status == 200, body
        yield uri, base


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reading side (MlflowClient in this process) logs in as USER."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)


def files_holding(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_the_server_refuses_a_write_without_the_owners_login(auth_server, as_user):
    """No login, a wrong password: 401; another user's login (default_permission READ):
    403. The tag is not set; the owner's own write passes."""
    uri, _ = auth_server
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(f"auth-check-{secrets.token_hex(4)}")
    run_id = client.create_run(exp_id).info.run_id
    tag = {"run_id": run_id, "key": "verdict", "value": "forged"}
    assert api(uri, "experiments/search?max_results=1")[0] == 401
    assert api(uri, "runs/set-tag", tag)[0] == 401
    assert api(uri, "runs/set-tag", tag, _basic(USER, WRONG))[0] == 401
    assert api(uri, "runs/set-tag", tag, _basic(OTHER, OTHER_SECRET))[0] == 403
    # ... nor start runs in USER's experiment (docs/scaling-out.md: grant EDIT to share one)
    assert api(uri, "runs/create", {"experiment_id": exp_id}, _basic(OTHER, OTHER_SECRET)
               )[0] == 403
    assert "verdict" not in client.get_run(run_id).data.tags
    assert api(uri, "runs/set-tag", {**tag, "value": "own"}, _basic(USER, SECRET))[0] == 200
    assert client.get_run(run_id).data.tags["verdict"] == "own"
    client.set_terminated(run_id)
    client.delete_experiment(exp_id)  # out of the study test's search


@pytest.mark.parametrize(("login", "refusal"), [
    ({}, "the server wants credentials (HTTP 401"),
    ({"MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": WRONG},
     "credentials were refused (HTTP 401"),
], ids=["no-credentials", "wrong-password"])
def test_a_client_without_a_valid_login_is_refused_before_anything_runs(
    auth_server, project, login, refusal
):
    uri, _ = auth_server
    proc = run_train(project, "cell=lstm", "experiment=smoke", f"search.n_trials={N_TRIALS}",
                     "search.reeval_seeds=0", MLFLOW_TRACKING_URI=uri, **login)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: MLFLOW_TRACKING_URI={uri}: {refusal}"), lines[0]
    assert "MLFLOW_TRACKING_PASSWORD" in lines[0]  # says where the password goes
    for secret in (SECRET, WRONG):
        assert secret not in proc.stdout + proc.stderr
    assert not (project / "mlruns").exists() and not (project / "outputs").exists()


@pytest.mark.slow
def test_a_study_runs_against_the_authenticated_server_without_showing_the_password(
    auth_server, as_user, project
):
    uri, server_dir = auth_server
    proc = run_train(project, "cell=lstm", "experiment=smoke", f"search.n_trials={N_TRIALS}",
                     "search.reeval_seeds=0", MLFLOW_TRACKING_URI=uri,
                     MLFLOW_TRACKING_USERNAME=USER, MLFLOW_TRACKING_PASSWORD=SECRET)
    assert proc.returncode == 0, proc.stderr[-3000:]

    check_no_loss(optuna_url(project), uri, N_TRIALS, n_studies=1)
    assert not (project / "mlruns" / "mlflow.db").exists()  # the runs went to the server

    # The password is in no console output, project file (Hydra's logs and saved
    # overrides, the Optuna store), MLflow param or tag, or artifact.
    assert SECRET not in proc.stdout + proc.stderr
    assert list((project / "outputs").rglob("*.log"))
    assert files_holding(project, SECRET) == []
    runs = all_runs(uri)
    assert runs and all(SECRET not in repr(r.data.params) + repr(r.data.tags) for r in runs)
    assert files_holding(server_dir / "artifacts", SECRET) == []
