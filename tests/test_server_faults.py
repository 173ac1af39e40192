"""Real servers that fail in the middle of a study: PostgreSQL stopped and restarted, the MLflow
tracking server killed (-9) and restarted, and one of two workers killed (-9) mid-trial.

The setup is the documented many-machine one (docs/scaling-out.md): Optuna's storage and the
tracking server's backend store in one PostgreSQL, a real `mlflow server` on loopback. Each
fault comes at a random moment of a trial (the seed is in every assertion message); the
command either rides it out (exit 0) or stops with one line naming the store (exit 1), and
the same command again ends the study with exactly search.n_trials finished trials, every
trial finished before the fault unchanged, and nothing left RUNNING. The three-fault variants
are marked `faults` (`make test-faults`, run by CI); `make test` runs one fault of each kind.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from conftest import clean_env, make_project_copy
from servers import PostgresServer, Server, free_port
from store_checks import all_runs, check_no_loss, finished_snapshot, trials_by_study

SECRET = "s3cretpw"
N_TRIALS = 4  # the two-worker study's
# One study, short heartbeats so that a rerun takes over a dead worker's trial in seconds.
ARGS = ["cell=lstm", "experiment=smoke", "data.size=small", "search.reeval_seeds=0",
        "search.heartbeat_interval=1", "search.heartbeat_grace_period=2"]
# A restart: within the MLflow client's retries (5, backoff factor 1: about 30 s) it can
# be ridden out; an Optuna query while the database is down stops the run in one line.
DOWN_SECONDS = 10
# A fault run's new trials: a smoke trial takes 0.3-0.7 s here (pruned ones less), so 4
# trials could all end within the 3 s a fault may wait (CI, 2026-12-06: two runs ended
# before their fault); 12 keep the run working about twice as long as the latest fault.
TRIALS_PER_RUN = 12


@dataclass
class Stack:
    pg: PostgresServer
    tracking: Server
    storage: str
    uri: str
    base: Path
    outcomes: list[str] = field(default_factory=list)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Fresh PostgreSQL (databases optuna, mlflow) and `mlflow server` on it, per test."""
    pg = PostgresServer(SECRET)
    try:
        pg.create_databases("optuna", "mlflow")
        artifacts = tmp_path / "mlflow-artifacts"
        artifacts.mkdir()
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        cmd = [str(Path(sys.executable).parent / "mlflow"), "server",
               "--backend-store-uri", f"{pg.url}/mlflow",
               "--artifacts-destination", str(artifacts),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        # No background job runner (it only serves GenAI features).
        tracking = Server(cmd, f"{uri}/health", tmp_path / "mlflow-server.log", tmp_path,
                          MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        tracking.start()
        try:
            yield Stack(pg, tracking, f"{pg.url}/optuna", uri, tmp_path)
        finally:
            tracking.kill(signal.SIGTERM)
    finally:
        pg.remove()


def _running_trials(storage: str) -> set[int]:
    engine = sqlalchemy.create_engine(storage, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as con:
            rows = con.execute(sqlalchemy.text(
                "SELECT trial_id FROM trials WHERE state = 'RUNNING'")).fetchall()
        return {r[0] for r in rows}
    except sqlalchemy.exc.SQLAlchemyError:  # tables not created yet
        return set()
    finally:
        engine.dispose()


def _all_trial_ids(storage: str) -> set[int]:
    return {t._trial_id for ts in trials_by_study(storage).values() for t in ts}


def _start(project: Path, stack: Stack, name: str, n_trials: int = N_TRIALS
           ) -> tuple[subprocess.Popen, Path]:
    err = stack.base / f"{name}.err"
    proc = subprocess.Popen(
        [sys.executable, "train.py", *ARGS, f"search.storage={stack.storage}",
         f"search.n_trials={n_trials}"],
        cwd=project, env=clean_env(MLFLOW_TRACKING_URI=stack.uri),
        stdout=(stack.base / f"{name}.out").open("w"), stderr=err.open("w"))
    return proc, err


def _wait_for_new_trial(proc: subprocess.Popen, storage: str, seen: set[int],
                        timeout: float = 180) -> int:
    """A trial this run created is RUNNING (a new trial id): the fault hits a trial."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = _running_trials(storage) - seen
        if new:
            return min(new)
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before a trial ran"
        time.sleep(0.2)
    raise TimeoutError("no trial started")


def _check_outcome(proc: subprocess.Popen, err: Path, stores: tuple[str, ...], what: str) -> str:
    """Exit 0 (rode it out) or 1 with one line naming a store; never a traceback."""
    rc = proc.wait(timeout=300)
    lines = [ln for ln in err.read_text().splitlines() if ln.strip()]
    assert rc in (0, 1), (what, rc, lines[-20:])
    assert SECRET not in err.read_text(), what
    if rc == 0:
        return "survived"
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], (what, lines[-20:])
    assert "Traceback" not in err.read_text(), what
    assert any(f"error: {store}" in errors[0] for store in stores), (what, errors)
    assert "rerun the same command" in errors[0], (what, errors)
    named = " ".join(errors[0].split()[1:3])  # "study storage", "tracking store", ...
    return f"stopped in one line naming the {named}"


def _faults_then_rerun(project: Path, stack: Stack, n_faults: int, stores: tuple[str, ...],
                       fault: Callable[[], None], recover: Callable[[], None]) -> None:
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    for k in range(n_faults):
        before = finished_snapshot(stack.storage) if k else {}
        # A run that rides the fault out finishes its study: each run asks for
        # TRIALS_PER_RUN trials more than are finished (search.n_trials is not a fixed
        # setting), so that the fault, up to 3 s after the run's first trial starts, finds
        # it working.
        n_trials = TRIALS_PER_RUN + sum(len(trials) for trials in before.values())
        seen = _all_trial_ids(stack.storage) if k else set()
        proc, err = _start(project, stack, f"run{k}", n_trials)
        _wait_for_new_trial(proc, stack.storage, seen)
        delay = rng.uniform(0.0, 3.0)
        what = f"seed {seed}, fault {k + 1} at {delay:.2f} s into a trial"
        time.sleep(delay)
        assert proc.poll() is None, f"{what}: the run ended before the fault"
        fault()
        hit, ended = time.monotonic(), None
        while time.monotonic() - hit < DOWN_SECONDS:
            if ended is None and proc.poll() is not None:
                ended = time.monotonic() - hit
            time.sleep(0.1)
        down = ended is None  # still running when the server came back
        recover()
        while proc.poll() is None and time.monotonic() - hit < 300:
            time.sleep(0.1)
        ended = time.monotonic() - hit if ended is None else ended
        outcome = _check_outcome(proc, err, stores, what)
        # Left for the rerun to close: the stopped run could not reach the store to do it.
        left = sum(r.info.status == "RUNNING" for r in all_runs(stack.uri))
        when = "after the server was back" if down else "while the server was down"
        stack.outcomes.append(f"{outcome} {ended:.1f} s after the fault ({when}), {left} runs "
                              "RUNNING" if proc.returncode else f"{outcome} ({ended:.1f} s)")
        after = finished_snapshot(stack.storage)
        for name, trials in before.items():  # nothing finished before the fault changed
            assert {n: after[name][n] for n in trials} == trials, what
    started = time.monotonic()
    final, err = _start(project, stack, "rerun", n_trials)
    assert final.wait(timeout=400) == 0, err.read_text()[-3000:]
    recovery = time.monotonic() - started
    os.environ["MLFLOW_TRACKING_URI"] = stack.uri  # restored by conftest's autouse fixture
    check_no_loss(stack.storage, stack.uri, n_trials, n_studies=1)
    print(f"{n_faults} faults (seed {seed}): {stack.outcomes}; rerun to "
          f"{n_trials} finished trials in {recovery:.0f} s")


def server_stores(uri: str) -> tuple[str, ...]:
    """How a failure of the tracking server is named: its tracking or its artifact store."""
    return (f"tracking store {uri} failed", f"artifact store of the tracking server {uri} failed")


FAULT_COUNTS = [1, pytest.param(3, marks=pytest.mark.faults)]


@pytest.mark.slow
@pytest.mark.parametrize("n_faults", FAULT_COUNTS)
def test_postgres_stopped_and_restarted_mid_study(stack, tmp_path, n_faults):
    """`pg_ctl stop -m fast` (every session ended, as an admin's restart does), started again
    after DOWN_SECONDS: Optuna's storage and the tracking server's backend both go away."""
    project = make_project_copy(tmp_path / "project")
    # Whichever store notices first: Optuna's storage, or the tracking server over it.
    stores = (f"study storage {stack.pg.url.replace(SECRET, '***')}/optuna failed",
              *server_stores(stack.uri))
    _faults_then_rerun(project, stack, n_faults, stores, stack.pg.stop, stack.pg.start)


@pytest.mark.slow
@pytest.mark.parametrize("n_faults", FAULT_COUNTS)
def test_tracking_server_killed_and_restarted_mid_study(stack, tmp_path, n_faults):
    """kill -9 of `mlflow server` and its workers, the same command again on the same port
    after DOWN_SECONDS; every finished trial's run and metrics are there afterwards."""
    project = make_project_copy(tmp_path / "project")
    _faults_then_rerun(project, stack, n_faults, server_stores(stack.uri),
                       stack.tracking.kill, stack.tracking.start)


def _trial_states(storage: str) -> dict[int, str]:
    engine = sqlalchemy.create_engine(storage, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as con:
            return dict(con.execute(sqlalchemy.text("SELECT trial_id, state FROM trials")).all())
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_taken_over_by_the_other(stack, tmp_path):
    """Two workers on one study; when both run a trial, one gets kill -9. The survivor marks
    the dead worker's trial FAIL once its heartbeat is older than the grace period, runs its
    parameters again and finishes the study; the takeover time is printed."""
    project = make_project_copy(tmp_path / "project")
    procs = [_start(project, stack, f"worker{i}") for i in range(2)]
    deadline = time.monotonic() + 240
    while len(_running_trials(stack.storage)) < 2:
        assert all(p.poll() is None for p, _ in procs), [e.read_text()[-2000:] for _, e in procs]
        assert time.monotonic() < deadline, "the two workers never ran trials together"
        time.sleep(0.1)
    running = _running_trials(stack.storage)
    victim, err = procs[0]
    victim.kill()
    killed_at = time.monotonic()
    victim.wait()
    # One of the two trials was the victim's: it becomes FAIL; the other finishes normally.
    while True:
        states = _trial_states(stack.storage)
        failed = [t for t in running if states[t] == "FAIL"]
        if failed:
            break
        assert time.monotonic() - killed_at < 120, "no takeover in 120 s"
        time.sleep(0.1)
    takeover = time.monotonic() - killed_at
    survivor, survivor_err = procs[1]
    assert survivor.wait(timeout=400) == 0, survivor_err.read_text()[-3000:]
    os.environ["MLFLOW_TRACKING_URI"] = stack.uri  # restored by conftest's autouse fixture
    check_no_loss(stack.storage, stack.uri, N_TRIALS, n_studies=1)
    (trials,) = trials_by_study(stack.storage).values()
    dead = next(t for t in trials if t._trial_id == failed[0])
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    # Killed before it sampled every value, the retry samples the rest afresh.
    assert retried and dead.params.items() <= retried[0].params.items(), (dead.number,
                                                                          dead.params)
    assert retried[0].state.name in ("COMPLETE", "PRUNED")
    # Grace period 2 s, heartbeat 1 s: the survivor looks again when its own trial ends.
    print(f"takeover {takeover:.1f} s after kill -9 (grace 2 s); retried as trial "
          f"{retried[0].number}")


def test_a_postgres_restart_between_two_queries_is_ridden_out():
    """The pool's connections die with the restart; each is tested before use (pre-ping),
    so the next query reconnects instead of stopping the study."""
    from omegaconf import OmegaConf

    from rnnsweep.search.study import fail_silent_trials, make_storage

    pg = PostgresServer(SECRET)
    try:
        pg.create_databases("optuna")
        cfg = OmegaConf.create({"search": {
            "storage": f"{pg.url}/optuna", "heartbeat_interval": 10,
            "heartbeat_grace_period": 30, "retry_failed_trials": 1}})
        storage = make_storage(cfg.search)
        study = optuna.create_study(storage=storage, study_name="s")
        study.enqueue_trial({"x": 1.0})
        fail_silent_trials(study, cfg.search)  # its own engine: a pooled connection too
        pg.stop()
        pg.start()
        assert fail_silent_trials(study, cfg.search) == []
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0, 2))
        assert [t.value for t in study.get_trials()] == [1.0]
    finally:
        pg.remove()
