"""Start a real server (MLflow UI, optuna-dashboard, PostgreSQL) on a free loopback port for
one test."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import clean_env

PG_USER = "rnnsweep"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout} s:\n{log.read_text()[-2000:]}")


@contextlib.contextmanager
def serve(
    cmd: list[str], health_url: str, log: Path, cwd: Path, timeout: float = 90, **env: str
) -> Iterator[None]:
    """Run `cmd` until the block ends; its output goes to `log` (shown when it fails)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=clean_env(**env), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(health_url, proc, log, timeout)
        yield
    finally:
        # The server's own process group: mlflow ui runs uvicorn workers as children.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def postgres_cluster(url_password: str, databases: tuple[str, ...]) -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 in a temp dir, with `databases` created,
    whose password is `url_password` decoded ("%2F" -> "/"); yields
    postgresql://user:<url_password>@host:port. Debian's binaries (`make test` installs
    them): skipped locally without them, failed in CI (CI=true)."""
    import sqlalchemy

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries missing (/usr/lib/postgresql/*/bin/pg_ctl)")
        pytest.skip("PostgreSQL binaries missing: apt-get install postgresql")
    bindir = Path(found[-1]).parent
    # initdb refuses to run as root; the Debian package's postgres user owns the cluster.
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="rnnsweep-pg-"))
    data, pwfile = base / "data", base / "pw"
    pwfile.write_text(unquote(url_password))
    if as_pg:
        shutil.chown(base, "postgres")
        shutil.chown(pwfile, "postgres")
    port = free_port()
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(data), "-U", PG_USER,
                    f"--pwfile={pwfile}", "--auth=scram-sha-256"], check=True,
                   capture_output=True)
    subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(base / "server.log"), "-o", f"-h 127.0.0.1 -p {port} -k {base}",
                    "start"], check=True, capture_output=True)
    url = f"postgresql://{PG_USER}:{url_password}@127.0.0.1:{port}"
    try:
        engine = sqlalchemy.create_engine(f"{url}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as con:
            for db in databases:
                con.execute(sqlalchemy.text(f"CREATE DATABASE {db}"))
        engine.dispose()
        yield url
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
