"""The tracking store answers before any job starts (the preflight's check): an MLflow
server's health and the credentials it wants, as MLflow's client would send them, or a
sqlite:/// file that opens as a store. Standard library only: nothing here needs MLflow."""

from __future__ import annotations

import base64
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from urllib.parse import unquote

from rnnsweep.errors import ConfigError
from rnnsweep.redact import redact, userinfo_problem
from rnnsweep.store_init import preflight_sqlite
from rnnsweep.store_schemas import MLFLOW


def _auth_headers(parts: urllib.parse.SplitResult) -> dict[str, str]:
    """The Authorization header MLflow's client sends: the URL's user info first (requests
    reads it from the URL, latin-1 encoded, and it replaces any other), then
    MLFLOW_TRACKING_USERNAME/_PASSWORD (UTF-8, as MLflow encodes them), then
    MLFLOW_TRACKING_TOKEN as a bearer token."""
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        try:
            raw = pair.encode("latin-1")
        except UnicodeEncodeError:
            raw = pair.encode("utf-8")
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        raw = f"{user}:{password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _ssl_context(uri: str) -> ssl.SSLContext | None:
    """MLflow's TLS variables: MLFLOW_TRACKING_INSECURE_TLS, MLFLOW_TRACKING_SERVER_CERT_PATH."""
    if not uri.startswith("https://"):
        return None
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"))


def check_reachable(uri: str, key: str = "tracking.uri", timeout: float = 10.0) -> None:
    """A tracking server must answer its health check, and accept the credentials, before
    any job starts.

    urllib cannot open a URL with user info (it reads "user:pw@host" as the host name), so
    the user info is stripped from the URL and sent as an Authorization header, as MLflow's
    client does; MLflow's own MLFLOW_TRACKING_USERNAME/_PASSWORD (or _TOKEN) work the same.
    MLflow's basic-auth app leaves /health open, so a read of one experiment follows: a
    wrong or missing password fails here, not inside the first trial.

    A sqlite:/// store that exists must open as SQLite and not be a half-built one holding
    data (rnnsweep.store_init.preflight_sqlite); a missing one is created by the first job.
    """
    if uri.startswith("sqlite:///"):
        preflight_sqlite(uri, key, MLFLOW)
        return
    if not uri.startswith(("http://", "https://")):
        return
    where = f"{key}={redact(uri)}"
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError as err:
        raise ConfigError(f"{where}: not a valid URL: {redact(str(err))}") from None
    problem = userinfo_problem(uri)
    if problem:  # requests would misread it as well, and show part of the password
        raise ConfigError(f"{where}: {problem}")
    host = parts.netloc.rpartition("@")[2]
    if not host:
        raise ConfigError(f"{where}: not a valid URL: no host name")
    base = urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    headers = _auth_headers(parts)
    context = _ssl_context(uri)
    for path, what in (("/health", "health check"),
                       ("/api/2.0/mlflow/experiments/search?max_results=1", "experiment search")):
        request = urllib.request.Request(base + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:
                status = reply.status
        except urllib.error.HTTPError as err:
            status = err.code
            err.close()
        except (OSError, ValueError) as err:
            reason = redact(str(getattr(err, "reason", err)))
            raise ConfigError(f"{where}: tracking server not reachable: {reason}") from None
        if status in (401, 403):
            given = ("credentials were refused" if "Authorization" in headers else
                     "the server wants credentials")
            raise ConfigError(
                f"{where}: {given} (HTTP {status} on its {what}): put them in the URL "
                "(http://user:password@host) or in MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD"
            )
        if status != 200 and what == "health check":
            # Other answers of the search (an older server's 404) are left to the client.
            raise ConfigError(f"{where}: tracking server not reachable: HTTP {status} on its "
                              "health check")
