"""`dvc repro` in a temporary git copy of the repo, with the real dvc CLI and a smoke sweep."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, clean_env, query

pytestmark = pytest.mark.slow


def git_copy(dst: Path) -> Path:
    """The working tree as git sees it (tracked + untracked, not ignored), committed afresh."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dst, check=True, capture_output=True)
    return dst


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    bin_dir = str(Path(sys.executable).parent)  # the project's venv: `python` in stage commands
    env = clean_env(PATH=bin_dir + os.pathsep + os.environ["PATH"], DVC_NO_ANALYTICS="1")
    return subprocess.run([str(Path(bin_dir) / "dvc"), *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=1200)


def trials_per_study(repo: Path) -> set[int]:
    rows = query(repo / "mlruns" / "optuna.db",
                 "SELECT study_id, COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED') "
                 "GROUP BY study_id")
    return {n for _, n in rows}


def test_repro_twice_then_after_a_config_change(tmp_path: Path) -> None:
    repo = git_copy(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["sweep"].update(profile="smoke", overrides="data.size=small")
    (repo / "params.yaml").write_text(yaml.safe_dump(params))

    first = dvc(repo, "repro")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    stamp = json.loads((repo / "reports" / "adding-sweep.json").read_text())
    assert stamp["sweep_id"].startswith("dvc-")
    metrics = json.loads((repo / "reports" / "adding" / "metrics.json").read_text())
    assert set(metrics) >= {"lstm", "gru", "claims"}
    assert trials_per_study(repo) == {3}

    second = dvc(repo, "repro")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Running stage" not in second.stdout
    assert "'sweep' didn't change" in second.stdout
    assert "'report' didn't change" in second.stdout

    shown = dvc(repo, "metrics", "show")
    assert shown.returncode == 0, shown.stderr
    assert "reports/adding/metrics.json" in shown.stdout
    assert "lstm.small.test_mean" in shown.stdout
    assert f"{metrics['gru']['small']['best_trial_val']:.5f}"[:6] in shown.stdout

    plots = dvc(repo, "plots", "show", "-o", str(tmp_path / "plots"))
    assert plots.returncode == 0, plots.stderr
    assert "expected" in (tmp_path / "plots" / "index.html").read_text()
    diff = dvc(repo, "params", "diff")  # against the commit: params.yaml was edited since
    assert diff.returncode == 0 and "sweep.profile" in diff.stdout and "smoke" in diff.stdout

    smoke = repo / "conf" / "experiment" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("n_trials: 3", "n_trials: 4"))
    third = dvc(repo, "repro")
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "Running stage 'sweep'" in third.stdout
    assert "Running stage 'report'" in third.stdout
    assert trials_per_study(repo) == {4}  # the studies resumed and grew by one trial
    new_stamp = json.loads((repo / "reports" / "adding-sweep.json").read_text())
    assert new_stamp["sweep_id"] != stamp["sweep_id"]
    assert new_stamp["sweep_id"] in (repo / "reports" / "adding" / "report.md").read_text()
