"""A tracking server behind basic auth: credentials in the URL or in MLflow's own variables
pass the preflight's check, wrong or missing ones fail in one line, and the password is never
in a message.

The server is a small real HTTP server (http.server in a thread) that answers /health and
MLflow's experiment search only with the right Authorization header, as a reverse proxy in
front of `mlflow server` does. (MLflow's own basic-auth app: tests/test_auth_server.py.)
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from rnnsweep.errors import ConfigError
from rnnsweep.tracking_check import check_reachable

MLFLOW_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


class AuthServer:
    """Accepts one user/password (or bearer token); records the requests it got."""

    def __init__(self) -> None:
        self.user, self.password, self.token = "admin", "pw", None
        self.open_health = False
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                header = self.headers.get("Authorization")
                server.requests.append((self.path, header))
                expected = {"Basic " + base64.b64encode(
                    f"{server.user}:{server.password}".encode()).decode()}
                if server.token:
                    expected.add(f"Bearer {server.token}")
                health = self.path == "/health"
                if header in expected or (health and server.open_health):
                    body = b"OK" if health else json.dumps({"experiments": []}).encode()
                    self.send_response(200)
                else:
                    body = b'{"error_code": "UNAUTHENTICATED"}'
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AuthServer]:
    for var in MLFLOW_VARS:
        monkeypatch.delenv(var, raising=False)
    srv = AuthServer()
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


CREDENTIALS = [
    ("admin", "pw"),
    ("admin", "se/cret9"),
    ("ad@min", "p@ss:w#rd?"),
    ("user name", "%2F already/escaped"),
]


@pytest.mark.parametrize(("user", "password"), CREDENTIALS)
def test_credentials_in_the_url_pass_the_check_as_basic_auth(server, user, password):
    server.user, server.password = user, password
    check_reachable(server.url(f"{quote(user, safe='')}:{quote(password, safe='')}"))
    assert [path for path, _ in server.requests] == [
        "/health", "/api/2.0/mlflow/experiments/search?max_results=1"]
    assert all(header and header.startswith("Basic ") for _, header in server.requests)


def test_a_literal_at_sign_in_the_user_name_is_read_as_mlflow_reads_it(server):
    """urllib and requests take the user info before the last '@'."""
    server.user, server.password = "ad@min", "p@ss"
    check_reachable(server.url("ad@min:p@ss"))
    assert len(server.requests) == 2


@pytest.mark.parametrize(("user", "password"), [*CREDENTIALS, ("ädmin", "pässwort")])
def test_mlflow_tracking_username_and_password_pass_the_check(server, monkeypatch, user,
                                                              password):
    server.user, server.password = user, password
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    check_reachable(server.url(), "MLFLOW_TRACKING_URI")
    assert len(server.requests) == 2


def test_mlflow_tracking_token_is_sent_as_bearer(server, monkeypatch):
    server.token = "t0ken-abc"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0ken-abc")
    check_reachable(server.url())
    assert {h for _, h in server.requests} == {"Bearer t0ken-abc"}


@pytest.mark.parametrize("open_health", [False, True])
@pytest.mark.parametrize(("given", "expected"), [
    ("admin:wrong/pass", "credentials were refused (HTTP 401"),
    ("intruder:se/cret9", "credentials were refused (HTTP 401"),
    ("", "the server wants credentials (HTTP 401"),
])
def test_wrong_or_missing_credentials_fail_in_one_line_without_the_password(
    server, given, expected, open_health
):
    """MLflow's basic-auth app leaves /health open: the experiment search still catches it."""
    server.open_health = open_health
    userinfo = quote(given, safe=":") if given else ""
    with pytest.raises(ConfigError) as err:
        check_reachable(server.url(userinfo))
    message = str(err.value)
    assert expected in message and "\n" not in message, message
    assert message.startswith("tracking.uri=http://")
    for secret in ("wrong/pass", "wrong%2Fpass", "se/cret9", "se%2Fcret9"):
        assert secret not in message


@pytest.mark.parametrize("userinfo", ["admin:se/cret", "admin:a?b", "admin:a#b", "ad/min:pw"])
def test_user_info_that_ends_the_host_part_is_refused_before_any_request(server, userinfo):
    with pytest.raises(ConfigError, match="%2F %3F %23") as err:
        check_reachable(server.url(userinfo))
    password = userinfo.partition(":")[2]
    assert password not in str(err.value) and server.requests == []


def test_a_server_that_is_down_names_the_masked_url(server):
    url = server.url("admin:se%2Fcret9")
    server.httpd.shutdown()
    server.httpd.server_close()
    with pytest.raises(ConfigError, match="not reachable") as err:
        check_reachable(url, "MLFLOW_TRACKING_URI")
    assert "se%2Fcret9" not in str(err.value) and "admin:***@127.0.0.1" in str(err.value)


@pytest.mark.slow
def test_a_real_mlflow_server_accepts_a_credentialed_url(tmp_path, monkeypatch):
    """The issue's case: `mlflow server` without auth, MLFLOW_TRACKING_URI with user info.
    MLflow's client works with it; the preflight's check must too."""
    import sys
    from pathlib import Path

    from mlflow.tracking import MlflowClient
    from servers import free_port, serve

    for var in MLFLOW_VARS:
        monkeypatch.delenv(var, raising=False)
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server",
           "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db",
           "--artifacts-destination", str(tmp_path / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with serve(cmd, f"http://127.0.0.1:{port}/health", tmp_path / "server.log", tmp_path,
               timeout=180, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"):
        for userinfo in ("admin:pw", "admin:se%2Fcret9", "ad@min:p@ss"):
            uri = f"http://{userinfo}@127.0.0.1:{port}"
            check_reachable(uri, "MLFLOW_TRACKING_URI")
            assert MlflowClient(tracking_uri=uri).search_experiments()  # "Default" exists
