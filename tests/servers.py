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


class PostgresServer:
    """A throwaway PostgreSQL server on 127.0.0.1 in a temp dir, whose password is
    `url_password` decoded ("%2F" -> "/"); `url` is postgresql://user:<url_password>@host:port.
    stop() and start() stop and restart it on the same port with its data (the fault tests).
    Debian's binaries (`make test` installs them): skipped locally without them, failed in
    CI (CI=true)."""

    def __init__(self, url_password: str) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            if os.environ.get("CI") == "true":
                pytest.fail("PostgreSQL binaries missing (/usr/lib/postgresql/*/bin/pg_ctl)")
            pytest.skip("PostgreSQL binaries missing: apt-get install postgresql")
        self.bindir = Path(found[-1]).parent
        # initdb refuses to run as root; the Debian package's postgres user owns the cluster.
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.base = Path(tempfile.mkdtemp(prefix="rnnsweep-pg-"))
        self.data, pwfile = self.base / "data", self.base / "pw"
        pwfile.write_text(unquote(url_password))
        if self.as_pg:
            shutil.chown(self.base, "postgres")
            shutil.chown(pwfile, "postgres")
        self.port = free_port()
        subprocess.run([*self.as_pg, str(self.bindir / "initdb"), "-D", str(self.data), "-U",
                        PG_USER, f"--pwfile={pwfile}", "--auth=scram-sha-256"], check=True,
                       capture_output=True)
        self.url = f"postgresql://{PG_USER}:{url_password}@127.0.0.1:{self.port}"
        self.start()

    def _ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self.as_pg, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
                       check=check, capture_output=True)

    def start(self) -> None:
        self._ctl("-w", "-l", str(self.base / "server.log"), "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.base}", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session at once (what a restart by an admin does); `immediate`
        is a crash."""
        self._ctl("-m", mode, "-w", "stop", check=False)

    def create_databases(self, *names: str) -> None:
        import sqlalchemy

        engine = sqlalchemy.create_engine(f"{self.url}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as con:
            for db in names:
                con.execute(sqlalchemy.text(f"CREATE DATABASE {db}"))
        engine.dispose()

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster(url_password: str, databases: tuple[str, ...]) -> Iterator[str]:
    """A PostgresServer with `databases` created, for the block; yields its URL."""
    server = PostgresServer(url_password)
    try:
        server.create_databases(*databases)
        yield server.url
    finally:
        server.remove()


class Server:
    """`cmd` as a server that a test can kill (-9) and start again on the same port; its
    output is appended to `log`."""

    def __init__(self, cmd: list[str], health_url: str, log: Path, cwd: Path,
                 timeout: float = 180, **env: str) -> None:
        self.cmd, self.health_url, self.log, self.cwd = cmd, health_url, log, cwd
        self.timeout, self.env = timeout, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=clean_env(**self.env),
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_http(self.health_url, self.proc, self.log, self.timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """The whole process group: `mlflow server` runs its workers as children."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
