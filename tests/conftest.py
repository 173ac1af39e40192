"""Shared fixtures: a throwaway copy of the project and one smoke sweep reused by many tests."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def make_project_copy(dst: Path) -> Path:
    """train.py and conf/ in a fresh folder: its own mlruns/ and outputs/, nothing shared."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "train.py", dst / "train.py")
    shutil.copytree(ROOT / "conf", dst / "conf")
    return dst


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "RNNSWEEP_"))}
    env.update(extra)
    return env


def run_train(project: Path, *args: str, timeout: float = 300, **env: str):
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=project, env=clean_env(**env),
        capture_output=True, text=True, timeout=timeout,
    )


def query(db: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql, params).fetchall()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project_copy(tmp_path / "project")


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python train.py -m cell=lstm,gru experiment=smoke` in a fresh copy, run once."""
    project = make_project_copy(tmp_path_factory.mktemp("smoke") / "project")
    # Generous limit: the machine is often shared, and re-evaluation adds 8 short fits.
    proc = run_train(project, "-m", "cell=lstm,gru", "experiment=smoke", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # What the user saw, for the console tests.
    (project / "sweep.stdout").write_text(proc.stdout)
    (project / "sweep.stderr").write_text(proc.stderr)
    return project


@pytest.fixture(scope="session")
def chorale_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A piano-roll cache of the first 6 bundled chorales, built by the real command (all
    of them take minutes)."""
    path = tmp_path_factory.mktemp("chorales") / "chorales.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "rnnsweep.data.prepare_chorales", "--out", str(path),
         "--max-chorales", "6"], env=clean_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "6 chorales" in proc.stderr
    return path
