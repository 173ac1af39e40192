"""Infrastructure errors are not trial failures (rnnsweep.errors): a store that fails stops
the study at once with one line naming it, exit 1, and leaves no trial counted as failed;
a trial's own error (NaN loss, CUDA out of memory, a bad value) is counted and the study
goes on."""

from __future__ import annotations

import errno
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from conftest import clean_env, run_train
from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import (
    BAD_REQUEST,
    INVALID_PARAMETER_VALUE,
    RESOURCE_ALREADY_EXISTS,
    TEMPORARILY_UNAVAILABLE,
)
from optuna.trial import TrialState
from store_checks import check_no_loss, mlflow_url, one_error_line, optuna_url, trials_by_study

from rnnsweep.errors import StoreError, infrastructure_cause, store_error
from rnnsweep.search.objective import INTERRUPTED_ATTR, REASON_ATTR, failed_by_itself


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as err:
            raise outer from err
    except BaseException as err:
        return err


def _db_error(text: str) -> BaseException:
    """As SQLAlchemy raises it: from the driver's error."""
    orig = sqlite3.OperationalError(text)
    return _chained(sqlalchemy.exc.OperationalError("INSERT ...", {}, orig), orig)


INFRASTRUCTURE = [
    _db_error("attempt to write a readonly database"),
    _db_error("database or disk is full"),
    sqlite3.OperationalError("disk I/O error"),
    sqlite3.DatabaseError("file is not a database"),
    sqlalchemy.exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")),
    MlflowException("db error", error_code=TEMPORARILY_UNAVAILABLE),
    _chained(MlflowException("x", error_code=BAD_REQUEST), _db_error("unable to open")),
    RestException({"error_code": "INTERNAL_ERROR", "message": "server failed"}),
    _chained(optuna.exceptions.StorageInternalError("commit failed"),
             _db_error("server closed the connection unexpectedly")),
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EFBIG, "File too large"),
    OSError(errno.EROFS, "Read-only file system"),
    PermissionError(errno.EACCES, "Permission denied"),
]
TRIAL_FAULTS = [
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ValueError("Expected parameter lr to be > 0"),
    FloatingPointError("overflow"),
    sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")),
    MlflowException("exists", error_code=RESOURCE_ALREADY_EXISTS),
    MlflowException("too long", error_code=INVALID_PARAMETER_VALUE),
    MlflowException("Failed to download artifacts from path 'model/best_state.pt'"),
    _chained(KeyError("val_loss"), FileNotFoundError(errno.ENOENT, "cache")),
]


@pytest.mark.parametrize("err", INFRASTRUCTURE, ids=lambda e: type(e).__name__)
def test_store_failures_are_the_infrastructures(err):
    assert infrastructure_cause(err) is not None
    halt = store_error(err, "study storage sqlite:///x.db")
    assert isinstance(halt, StoreError) and not isinstance(halt, Exception)
    assert str(halt).startswith("study storage sqlite:///x.db failed: ")
    assert "\n" not in str(halt) and "raised as a result of" not in str(halt)


@pytest.mark.parametrize("err", TRIAL_FAULTS, ids=lambda e: type(e).__name__)
def test_errors_from_training_are_the_trials(err):
    from rnnsweep.training import NonFiniteLossError

    assert infrastructure_cause(err) is None
    assert infrastructure_cause(NonFiniteLossError("train_loss is nan at step 10")) is None
    assert store_error(err, "tracking store x") is None


def test_inside_a_store_call_every_os_error_but_a_missing_file_is_the_stores():
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    assert infrastructure_cause(refused) is None  # not in a trial's own code
    assert infrastructure_cause(refused, store_call=True) is refused
    assert infrastructure_cause(NotADirectoryError(20, "x"), store_call=True) is not None
    assert infrastructure_cause(FileNotFoundError(2, "x"), store_call=True) is None


# -- the Tracker names its store ----------------------------------------------------------------
def _tracker(tmp_path: Path, uri: str | None = None):
    from omegaconf import OmegaConf

    from rnnsweep.tracking import Tracker

    return Tracker(OmegaConf.create({"uri": uri or f"sqlite:///{tmp_path}/mlflow.db",
                                     "artifact_root": str(tmp_path / "artifacts")}))


def test_tracker_turns_a_failing_store_into_one_store_error(tmp_path, monkeypatch,
                                                            empty_stores):
    shutil.copy(empty_stores / "mlflow.db", tmp_path / "mlflow.db")
    tracker = _tracker(tmp_path)
    run = tracker.start_run("exp", "r", {"role": "trial"})

    def disk_full(*args, **kwargs):  # as MLflow's SQL store raises it
        raise _chained(MlflowException("database error", error_code=TEMPORARILY_UNAVAILABLE),
                       _db_error("database or disk is full"))

    monkeypatch.setattr(tracker.client._client, "log_batch", disk_full)
    with pytest.raises(StoreError) as err:
        tracker.log(run, metrics={"val_loss": 1.0})
    assert str(err.value) == (f"tracking store sqlite:///{tmp_path}/mlflow.db failed: "
                              "OperationalError: database or disk is full")
    # A request the store refuses is passed on unchanged (the experiment race relies on it).
    with pytest.raises(MlflowException):
        tracker.client.create_experiment("exp")
    # The artifact store is named for artifact calls.
    (tmp_path / "artifacts").write_text("a file where the artifact folder should be")
    with pytest.raises(StoreError, match=r"^artifact store .*artifacts failed: .*Not a direct"):
        tracker.log_config(tracker.start_run("other", "r", {}), "a: 1\n")


def test_tracker_on_a_server_that_went_away_fails_fast_naming_it(tmp_path, monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker = _tracker(tmp_path, f"http://admin:s3cret@127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(StoreError) as err:
        tracker.start_run("exp", "r", {})
    assert time.monotonic() - started < 30
    assert str(err.value).startswith(f"tracking store http://admin:***@127.0.0.1:{port} failed")
    assert str(err.value).endswith("ConnectionRefusedError: [Errno 111] Connection refused")
    assert "s3cret" not in str(err.value)


# -- a study whose store fails: the trial is not counted, the study stops ---------------------
@pytest.fixture(scope="module")
def empty_stores(tmp_path_factory) -> Path:
    """An mlruns/ with both stores' schemas, made once: migrations take seconds."""
    import optuna.storages

    mlruns = tmp_path_factory.mktemp("stores") / "mlruns"
    mlruns.mkdir()
    _tracker(mlruns.parent, f"sqlite:///{mlruns}/mlflow.db")
    optuna.storages.RDBStorage(f"sqlite:///{mlruns}/optuna.db").remove_session()
    return mlruns


@pytest.fixture
def study_ctx(tmp_path, monkeypatch, empty_stores):
    """A smoke job's config, data, tracker and study, built in-process (no training)."""
    shutil.copytree(empty_stores, tmp_path / "mlruns")
    from conftest import ROOT
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from rnnsweep.job import Job, open_study_context, typed_config

    monkeypatch.setenv("RNNSWEEP_ROOT", str(tmp_path))
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = typed_config(compose("config", overrides=[
            "experiment=smoke", "cell=gru", "search.n_trials=3", "search.reeval_seeds=0",
            "search.max_failure_rate=0.9"]))
    GlobalHydra.instance().clear()
    return open_study_context(Job(cfg), [])


def _fake_training(monkeypatch, behaviour):
    """train_model replaced: `behaviour(trial_number, on_validation)` raises or returns."""
    import rnnsweep.search.objective as objective

    def train_model(cfg, datamodule, seed, callbacks=(), on_validation=None, trial=None):
        return behaviour(trial.number, on_validation)

    monkeypatch.setattr(objective, "train_model", train_model)


def _result(value: float):
    from rnnsweep.training import TrainResult

    return TrainResult(best_value=value, best_step=10, gap_at_best=0.0, optimizer_steps=10,
                       budget_steps=30, seconds_per_step=0.01, n_params=10, hidden_size=8,
                       test_metrics={"test_loss": value})


def test_a_store_failing_mid_study_stops_it_with_no_trial_counted(study_ctx, monkeypatch):
    from rnnsweep.search.runner import run_study

    study, ctx = study_ctx
    calls = []

    def behaviour(number, on_validation):
        calls.append(number)
        if number == 0:
            return _result(0.5)
        on_validation(10, {"val_loss": 0.4})  # the store breaks at trial 1's first log
        return _result(0.4)

    real_log_batch = ctx.tracker.client._client.log_batch

    def log_batch(run_id, metrics=(), params=(), tags=()):
        if len(calls) >= 2 and any(m.key == "val_loss" for m in metrics):
            raise _chained(MlflowException("db", error_code=TEMPORARILY_UNAVAILABLE),
                           _db_error("attempt to write a readonly database"))
        return real_log_batch(run_id, metrics=metrics, params=params, tags=tags)

    monkeypatch.setattr(ctx.tracker.client._client, "log_batch", log_batch)
    _fake_training(monkeypatch, behaviour)
    with pytest.raises(StoreError, match="^tracking store .*readonly database"):
        run_study(study, ctx)
    assert calls == [0, 1]  # stopped at once: no trial after the failing one
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if failed_by_itself(t)]
    broken = trials[1]
    assert broken.state == TrialState.FAIL and broken.user_attrs[INTERRUPTED_ATTR] is True
    assert broken.user_attrs[REASON_ATTR].startswith("store failed: tracking store sqlite:")
    # Queued again with the same parameters (search.retry_failed_trials=1).
    assert [t.state for t in trials[2:]] == [TrialState.WAITING]
    assert trials[2].params == broken.params


def test_the_study_storage_failing_inside_a_trial_stops_the_study(study_ctx, monkeypatch):
    from rnnsweep.search.runner import run_study

    study, ctx = study_ctx

    def behaviour(number, on_validation):
        raise optuna.exceptions.StorageInternalError("commit failed") from _db_error(
            "server closed the connection unexpectedly")

    _fake_training(monkeypatch, behaviour)
    with pytest.raises(StoreError, match=r"^study storage sqlite:.*optuna.db failed: .*server "):
        run_study(study, ctx)
    assert len([t for t in study.get_trials() if t.state == TrialState.FAIL]) == 1
    assert not [t for t in study.get_trials() if failed_by_itself(t)]


def test_trial_failures_are_counted_and_the_study_goes_on(study_ctx, monkeypatch):
    from rnnsweep.search.runner import run_study
    from rnnsweep.training import NonFiniteLossError

    study, ctx = study_ctx

    def behaviour(number, on_validation):
        if number == 1:
            raise NonFiniteLossError("train_loss is nan at step 10")
        if number == 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return _result(0.5)

    _fake_training(monkeypatch, behaviour)
    summary = run_study(study, ctx)
    assert summary.n_failed == 2 and summary.n_complete == 3
    reasons = [t.user_attrs[REASON_ATTR] for t in study.get_trials() if failed_by_itself(t)]
    assert reasons == ["NonFiniteLossError: train_loss is nan at step 10",
                       "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"]


def test_a_signal_keeps_its_exit_status_when_the_store_fails_too(study_ctx, monkeypatch):
    """SIGTERM while the store is failing: the trial still ends as interrupted and the
    Interrupted (exit 143) reaches the job runner, not the store's error."""
    from rnnsweep.search.runner import run_study
    from rnnsweep.signals import Interrupted

    study, ctx = study_ctx

    def behaviour(number, on_validation):
        raise Interrupted(signal.SIGTERM)

    def broken(*args, **kwargs):
        raise MlflowException(_db_error("disk I/O error"), error_code=TEMPORARILY_UNAVAILABLE)

    _fake_training(monkeypatch, behaviour)
    monkeypatch.setattr(ctx.tracker.client._client, "set_terminated", broken)
    with pytest.raises(Interrupted) as err:
        run_study(study, ctx)
    assert err.value.exit_code == 143
    (trial, *_) = study.get_trials()
    assert trial.user_attrs[INTERRUPTED_ATTR] is True and not failed_by_itself(trial)


# -- end to end: an unwritable store and a full disk -------------------------------------------
ARGS = ["experiment=smoke", "cell=lstm", "search.reeval_seeds=0"]


def _no_trial_counted(project: Path) -> list:
    (trials,) = trials_by_study(optuna_url(project)).values()
    assert not [t.number for t in trials if failed_by_itself(t)], [
        (t.number, t.state.name, t.user_attrs) for t in trials]
    return trials


def _finished(project: Path) -> int:
    db = project / "mlruns/optuna.db"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'"
                               ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _immutable(path: Path, on: bool) -> bool:
    if shutil.which("chattr") is None:
        return False
    proc = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True)
    return proc.returncode == 0


@pytest.mark.slow
def test_store_made_unwritable_mid_study_stops_it_in_one_line(project):
    proc = subprocess.Popen([sys.executable, "train.py", *ARGS, "search.n_trials=4"],
                            cwd=project, env=clean_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while _finished(project) < 1:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.05)
    mlruns = project / "mlruns"
    locked = _immutable(mlruns, True)
    if not locked:  # no chattr (or no CAP_LINUX_IMMUTABLE): permissions, unless root
        if hasattr(sys, "getuid") and __import__("os").getuid() == 0:
            proc.kill()
            proc.wait()
            pytest.skip("root without chattr +i cannot make a folder unwritable")
        mlruns.chmod(0o555)
    try:
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        assert time.monotonic() - started < 60
    finally:
        if locked:
            _immutable(mlruns, False)
        mlruns.chmod(0o755)
    assert proc.returncode == 1, stderr[-3000:]
    line = one_error_line(stderr)
    assert f"sqlite:///{project}/mlruns/" in line and " failed: " in line, line
    assert "rerun the same command to resume" in line
    trials = _no_trial_counted(project)
    assert [t.state for t in trials].count(TrialState.COMPLETE) >= 1


@pytest.mark.slow
def test_a_full_disk_stops_the_study_in_one_line_and_a_rerun_resumes(project):
    """`ulimit -f` at the store's current size: the next write that grows a file fails."""
    first = run_train(project, *ARGS, "search.n_trials=1")
    assert first.returncode == 0, first.stderr[-3000:]
    limit = max(p.stat().st_size for p in (project / "mlruns").rglob("*") if p.is_file())
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    started = time.monotonic()
    full = subprocess.run(
        [sys.executable, "train.py", *ARGS, "search.n_trials=3"], cwd=project, env=clean_env(),
        capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard)))
    assert time.monotonic() - started < 60
    assert full.returncode == 1, full.stderr[-3000:]
    line = one_error_line(full.stderr)
    assert "store sqlite:///" in line and ("disk I/O error" in line or "full" in line), line
    _no_trial_counted(project)

    rerun = run_train(project, *ARGS, "search.n_trials=3")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    check_no_loss(optuna_url(project), mlflow_url(project), n_trials=3, n_studies=1)
    trials = _no_trial_counted(project)
    # Every trial the full disk stopped was ended as interrupted, or failed as stale.
    assert all(t.user_attrs.get(INTERRUPTED_ATTR) or REASON_ATTR not in t.user_attrs
               for t in trials if t.state == TrialState.FAIL)
