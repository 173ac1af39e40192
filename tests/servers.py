"""Start a real server (MLflow UI, optuna-dashboard) on a free loopback port for one test."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from conftest import clean_env


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
