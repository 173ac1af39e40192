"""Kill a `-m` sweep at several points, rerun the same command, and lose nothing.

Each interruption is triggered by watching the stores (a trial RUNNING, an epoch logged to
MLflow, a trial just finished), not by sleeping. Between runs the finished trials are
snapshotted; the final rerun must keep every one of them unchanged and fill each study to
exactly search.n_trials.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_train
from store_checks import (
    all_runs,
    check_no_loss,
    finished_snapshot,
    mlflow_url,
    optuna_url,
    start_train,
    trials_by_study,
)

N_TRIALS = 3  # experiment=smoke
# Short heartbeats so a rerun takes over a killed trial within seconds.
# One process (the basic launcher), so the five kill points fall in a sequence of trials the
# test can watch; the joblib launcher's stops are tests/test_preemption.py's.
ARGS = ["-m", "cell=lstm", "experiment=smoke", "search.reeval_seeds=0",
        "search.heartbeat_interval=1", "search.heartbeat_grace_period=2", "hydra/launcher=basic"]


def _rows(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # schema not created yet, or briefly locked
        return []


def max_trial_id(project: Path) -> int:
    rows = _rows(project / "mlruns/optuna.db", "SELECT MAX(trial_id) FROM trials")
    return (rows[0][0] or 0) if rows else 0


def run_ids(project: Path) -> set[str]:
    return {r[0] for r in _rows(project / "mlruns/mlflow.db", "SELECT run_uuid FROM runs")}


def n_finished(project: Path) -> int:
    return len(_rows(project / "mlruns/optuna.db",
                     "SELECT 1 FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"))


# Kill points, each made when the run starts so that what a killed run left behind (a stale
# RUNNING trial, an orphan RUNNING child run) does not count as the new run's progress.
def after_sampling(project: Path) -> Callable[[], bool]:
    """A trial of this process has written its sampled values (RDB storage writes each
    suggest at once), so the kill leaves a FAIL trial whose retry must carry them."""
    seen = max_trial_id(project)
    sql = ("SELECT 1 FROM trials t JOIN trial_params p ON p.trial_id = t.trial_id "
           f"WHERE t.state = 'RUNNING' AND t.trial_id > {seen}")
    return lambda: bool(_rows(project / "mlruns/optuna.db", sql))


def during_logging(project: Path) -> Callable[[], bool]:
    """A child run created by this process has just received an epoch's metrics."""
    seen = run_ids(project)

    def ready() -> bool:
        rows = _rows(project / "mlruns/mlflow.db",
                     "SELECT r.run_uuid FROM runs r JOIN metrics m ON m.run_uuid = r.run_uuid "
                     "WHERE r.status = 'RUNNING' AND r.name LIKE 'trial-%' "
                     "AND m.key = 'val_loss'")
        return any(r[0] not in seen for r in rows)
    return ready


def between_trials(project: Path) -> Callable[[], bool]:
    before = n_finished(project)
    return lambda: n_finished(project) > before


def interrupt_when(project: Path, log: Path, ready: Callable[[], bool], sig: int,
                   timeout: float = 240) -> int:
    proc = start_train(project, *ARGS, log=log)
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"ended before the kill point:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.05)
    proc.send_signal(sig)
    return proc.wait(timeout=120)


@pytest.mark.slow
def test_killed_sweep_resumes_without_losing_or_redoing_trials(project, tmp_path):
    snapshots = []
    points = [
        # First, on a fresh store, so the killed trial is a new one and not a queued retry.
        ("kill -9 after sampling", after_sampling, signal.SIGKILL, -signal.SIGKILL),
        ("kill -9 during MLflow logging", during_logging, signal.SIGKILL, -signal.SIGKILL),
        ("kill -9 between trials", between_trials, signal.SIGKILL, -signal.SIGKILL),
        # SIGTERM at random moments of a sweep: tests/test_preemption.py
        ("Ctrl-C during MLflow logging", during_logging, signal.SIGINT, 130),
    ]
    for i, (label, kill_point, sig, expected_rc) in enumerate(points):
        log = tmp_path / f"run{i}.log"
        rc = interrupt_when(project, log, kill_point(project), sig)
        assert rc == expected_rc, f"{label}: rc {rc}\n{log.read_text()[-3000:]}"
        if sig != signal.SIGKILL:  # graceful: this run's trial and runs are closed at once
            assert "runs closed" in log.read_text()
        snapshots.append(finished_snapshot(optuna_url(project)))

    final = start_train(project, *ARGS, log=tmp_path / "final.log")
    assert final.wait(timeout=300) == 0, (tmp_path / "final.log").read_text()[-3000:]

    check_no_loss(optuna_url(project), mlflow_url(project), N_TRIALS, n_studies=2)
    after = finished_snapshot(optuna_url(project))
    for snap in snapshots:  # no finished trial redone or changed
        for study, trials in snap.items():
            assert trials.items() <= after[study].items()
    check_killed_trials_requeued(project)


def check_killed_trials_requeued(project) -> None:
    """Every killed trial ended FAIL, its run KILLED; each original was queued again once with
    its parameters (search.retry_failed_trials=1); no trial is left RUNNING or WAITING."""
    runs = {r.info.run_id: r for r in all_runs(mlflow_url(project))
            if r.data.tags.get("role") == "trial"}
    assert {r.info.status for r in runs.values()} <= {"FINISHED", "KILLED"}
    killed_runs: set[str] = set()
    with_params = 0
    for name, trials in trials_by_study(optuna_url(project)).items():
        states = {t.state.name for t in trials}
        assert states <= {"COMPLETE", "PRUNED", "FAIL"}, (name, states)
        for t in trials:
            if t.state.name != "FAIL":
                continue
            run_id = t.user_attrs.get("mlflow_run_id")
            if run_id is not None:
                killed_runs.add(run_id)
                assert runs[run_id].info.status == "KILLED", (name, t.number)
                assert runs[run_id].data.tags["state"] == "FAIL"
            if t.system_attrs.get("retry_history"):
                continue  # a retry killed in turn: not queued again (max 1 retry)
            again = [r for r in trials if (r.system_attrs.get("retry_history") or [None])[-1]
                     == t.number]
            assert len(again) == 1, (name, t.number, [r.number for r in again])
            assert {k: again[0].params[k] for k in t.params} == t.params
            with_params += bool(t.params)
    assert with_params >= 1  # a trial killed after sampling kept its values on the retry
    assert killed_runs <= {i for i, r in runs.items() if r.info.status == "KILLED"}
    studies = trials_by_study(optuna_url(project))
    for r in runs.values():  # a KILLED run belongs to a trial that ended FAIL
        if r.info.status == "KILLED":
            number = int(r.data.tags["trial_number"])
            trial = next(t for t in studies[r.data.tags["study_name"]] if t.number == number)
            assert trial.state.name == "FAIL", (r.info.run_name, trial.state)


@pytest.mark.parametrize(("override", "key"), [
    (["search.space.hidden_size.high=64"], "search.space"),
    # maximize needs a metric to maximise (val_loss with maximize is refused on its own).
    (["search.direction=maximize", "search.metric=val_acc"], "search.direction"),
    (["optim.weight_decay=0.1"], "optim.weight_decay"),
], ids=["space", "direction", "settings"])
def test_rerun_with_a_changed_study_setting_is_refused_before_anything_runs(
    smoke_sweep, override, key
):
    def state() -> tuple:
        return (sorted(p.name for p in (smoke_sweep / "outputs").rglob("*")),
                finished_snapshot(optuna_url(smoke_sweep)),
                _rows(smoke_sweep / "mlruns/mlflow.db", "SELECT run_uuid, status FROM runs"))

    before = state()
    proc = run_train(smoke_sweep, "-m", "cell=lstm,gru", "experiment=smoke", *override)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}"), proc.stderr
    assert "adding-small-lstm" in lines[0]
    assert state() == before


def test_heartbeat_grace_shorter_than_the_interval_is_refused(project):
    proc = run_train(project, "experiment=smoke", "search.heartbeat_grace_period=5")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: search.heartbeat_grace_period=5 is invalid")
    assert not (project / "mlruns").exists()
