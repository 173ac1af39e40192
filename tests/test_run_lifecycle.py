"""One run lifecycle (rnnsweep.run_lifecycle), in-process on a throwaway SQLite store: how a
run ends for each way its block can end, what a dead store may and may not hide, and what
a run costs in calls to the store."""

from __future__ import annotations

import math
import signal
from collections import Counter
from collections.abc import Iterator

import optuna
import pytest
from lightning.pytorch.utilities.exceptions import SIGTERMException
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from rnnsweep.errors import StoreError
from rnnsweep.run_lifecycle import TrackedRun, failure_reason, study_run
from rnnsweep.signals import Interrupted
from rnnsweep.tracking import Tracker
from rnnsweep.training import TrainResult, progress


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracker]:
    """One store for the module (creating its schema takes seconds); every test its runs."""
    folder = tmp_path_factory.mktemp("lifecycle")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # it would win over the config
        cfg = OmegaConf.create({"tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}",
                                             "artifact_root": str(folder / "artifacts")}})
        yield Tracker(cfg.tracking)


def start(tracker: Tracker, **kwargs) -> TrackedRun:
    return TrackedRun.start(tracker, "exp", "run", {"role": "trial"}, **kwargs)


def stored(tracker: Tracker, run: TrackedRun):
    return MlflowClient(tracker.uri).get_run(run.run_id)


def result(value: float = 0.25) -> TrainResult:
    return TrainResult(best_value=value, best_step=10, gap_at_best=0.01, optimizer_steps=30,
                       budget_steps=30, seconds_per_step=0.01, n_params=100, hidden_size=8,
                       test_metrics={"test_loss": 0.3}, device="cpu", backend="ATen")


def kill_store(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write fails as a database gone away does (GuardedClient: StoreError)."""
    def dead(*args, **kwargs):
        raise MlflowException("database is gone", error_code=TEMPORARILY_UNAVAILABLE)

    for name in ("log_batch", "set_terminated"):
        monkeypatch.setattr(tracker.client._client, name, dead)


def closing(tracker: Tracker, run: TrackedRun) -> tuple[str, dict[str, str]]:
    data = stored(tracker, run)
    return data.info.status, data.data.tags


# -- the run's record ------------------------------------------------------------------------
def test_a_block_that_ends_finishes_the_run_with_its_params_validations_and_result(tracker):
    with start(tracker) as run:
        assert closing(tracker, run)[0] == "RUNNING"
        assert closing(tracker, run)[1]["state"] == "RUNNING"
        run.log_start({"lr": 0.01, "seed": 7}, metrics={"n_params": 100})
        run.log_validation(5, {"val_loss": 0.5, "train_loss": math.nan})
        run.log_validation(10, {"val_loss": 0.25, "train_loss": 0.2})
        run.log_result(result(), "val_loss")
    data = stored(tracker, run)
    assert data.info.status == "FINISHED"
    assert data.data.tags["state"] == "COMPLETE" and "fail_reason" not in data.data.tags
    assert data.data.tags["device"] == "cpu" and data.data.tags["backend"] == "ATen"
    assert data.data.params == {"lr": "0.01", "seed": "7"}
    metrics = data.data.metrics
    assert metrics["best_val_loss"] == 0.25 and metrics["test_loss"] == 0.3
    assert metrics["n_params"] == 100 and metrics["wall_seconds"] > 0
    client = MlflowClient(tracker.uri)
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "val_loss")] == [
        (5, 0.5), (10, 0.25)]
    # A non-finite value is left out, not written as NaN.
    assert [m.step for m in client.get_metric_history(run.run_id, "train_loss")] == [10]


def test_a_pruned_trial_finishes_as_pruned(tracker):
    with pytest.raises(optuna.TrialPruned), start(tracker) as run:
        raise optuna.TrialPruned()
    status, tags = closing(tracker, run)
    assert (status, tags["state"]) == ("FINISHED", "PRUNED")
    # The runs table shows names and statuses by default: the name tells it from a complete
    # run (FINISHED too), which keeps its own.
    assert stored(tracker, run).info.run_name == "run (pruned)"
    with start(tracker) as complete:
        pass
    assert stored(tracker, complete).info.run_name == "run"


@pytest.mark.parametrize("err", [optuna.TrialPruned("pruned at step 40"), ValueError("boom")],
                         ids=["pruned", "failed"])
def test_a_run_that_ends_early_records_what_it_spent(tracker, err):
    """A study's compute is the sum of its runs' optimizer_steps: pruned and failed runs
    record theirs (attached by train_model), their best step, and wall and CPU seconds."""
    err.progress = progress(40, 20)
    with pytest.raises(type(err)), start(tracker) as run:
        sum(i * i for i in range(200_000))  # some CPU time to record
        raise err
    metrics = stored(tracker, run).data.metrics
    assert metrics["optimizer_steps"] == 40 and metrics["best_step"] == 20
    assert metrics["wall_seconds"] > 0 and metrics["cpu_seconds"] > 0
    assert progress(3, -1) == {"optimizer_steps": 3.0}  # no validation finished: no best step


def test_a_failing_body_ends_the_run_failed_with_its_reason(tracker):
    seen = []
    run = start(tracker, on_failure=lambda reason: seen.append(
        (reason, closing(tracker, run)[0])))
    with pytest.raises(ValueError, match="hidden_size must be positive"), run:
        raise ValueError("hidden_size must be positive\nsecond line of detail")
    status, tags = closing(tracker, run)
    assert status == "FAILED" and tags["state"] == "FAIL"
    assert tags["fail_reason"] == "ValueError: hidden_size must be positive"
    # on_failure saw the same reason while the run was still open (a trial records it first).
    assert seen == [("ValueError: hidden_size must be positive", "RUNNING")]
    assert failure_reason(RuntimeError()) == "RuntimeError: "


@pytest.mark.parametrize(("raised", "caught", "reason"), [
    (KeyboardInterrupt(), KeyboardInterrupt, "interrupted"),
    (SystemExit(3), SystemExit, "interrupted"),
    (Interrupted(signal.SIGINT), Interrupted, "interrupted by SIGINT"),
    (StoreError("tracking store sqlite:///x.db", "disk I/O error"), StoreError,
     "store failed: tracking store sqlite:///x.db"),
])
def test_an_interruption_ends_the_run_killed_and_is_raised_again(tracker, raised, caught,
                                                                 reason):
    failures = []
    with pytest.raises(caught) as err, start(tracker, on_failure=failures.append) as run:
        raise raised
    assert err.value is raised
    status, tags = closing(tracker, run)
    assert (status, tags["state"], tags["fail_reason"]) == ("KILLED", "FAIL", reason)
    assert failures == []  # not the run's own failure: a trial keeps no reason for it


def test_lightnings_sigterm_exit_becomes_our_interrupt(tracker):
    with pytest.raises(Interrupted) as err, start(tracker) as run:
        raise SIGTERMException()
    assert err.value.exit_code == 143 and err.value.__cause__ is None
    status, tags = closing(tracker, run)
    assert (status, tags["fail_reason"]) == ("KILLED", "interrupted by SIGTERM")


def test_an_error_classified_as_a_store_failure_kills_the_run(tracker):
    halt = StoreError("study storage sqlite:///optuna.db", "database is locked")
    failures = []
    original = OSError("commit failed")
    with pytest.raises(StoreError) as err, start(
            tracker, classify=lambda e: halt if e is original else None,
            on_failure=failures.append) as run:
        raise original
    assert err.value is halt and err.value.__cause__ is original
    status, tags = closing(tracker, run)
    assert (status, tags["fail_reason"]) == ("KILLED", "store failed: study storage "
                                                       "sqlite:///optuna.db")
    assert failures == []


# -- a dead store ----------------------------------------------------------------------------
@pytest.mark.parametrize("raised", [KeyboardInterrupt(), Interrupted(signal.SIGTERM),
                                    StoreError("artifact store /x", "read-only file system")])
def test_a_dead_store_while_closing_does_not_hide_the_interruption(tracker, raised):
    run = start(tracker)
    with pytest.MonkeyPatch.context() as mp:
        kill_store(tracker, mp)
        with pytest.raises(type(raised)) as err, run:
            raise raised
    assert err.value is raised
    assert closing(tracker, run)[0] == "RUNNING"  # left for the orphan check to close


def test_a_dead_store_while_recording_a_failure_stops_with_the_failure_chained(tracker,
                                                                              monkeypatch):
    """The failure could not be recorded: the store's error is raised (the study stops and
    the trial is re-queued, rnnsweep.errors), and the failure is its context, not lost."""
    run = start(tracker)
    kill_store(tracker, monkeypatch)
    original = ValueError("bad value")
    with pytest.raises(StoreError, match="database is gone") as err, run:
        raise original
    chain, e = [], err.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    assert original in chain  # the traceback shows it under the store's error


# -- the study's parent run ------------------------------------------------------------------
def parent(tracker: Tracker) -> str:
    return tracker.start_run("exp", "study", {"role": "study"})


def test_study_run_finishes_fails_and_kills_its_parent(tracker):
    client = MlflowClient(tracker.uri)
    no_store = lambda err: None  # noqa: E731
    ok = parent(tracker)
    with study_run(tracker, ok, no_store):
        pass
    failed, killed = parent(tracker), parent(tracker)
    with pytest.raises(ValueError), study_run(tracker, failed, no_store):
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), study_run(tracker, killed, no_store):
        raise KeyboardInterrupt
    assert [client.get_run(r).info.status for r in (ok, failed, killed)] == [
        "FINISHED", "FAILED", "KILLED"]
    # No state tag: a study's state lives in its trials.
    assert "state" not in client.get_run(failed).data.tags


def test_study_run_reports_a_store_failure_and_survives_a_dead_store(tracker, monkeypatch):
    client = MlflowClient(tracker.uri)
    halt = StoreError("study storage x", "gone")
    original = OSError("commit failed")
    broken = parent(tracker)
    with pytest.raises(StoreError) as err, study_run(tracker, broken, lambda e: halt):
        raise original
    assert err.value is halt and err.value.__cause__ is original
    assert client.get_run(broken).info.status == "FAILED"
    dead = parent(tracker)
    kill_store(tracker, monkeypatch)
    with pytest.raises(Interrupted), study_run(tracker, dead, lambda e: None):
        raise Interrupted(signal.SIGINT)


# -- calls to the store ----------------------------------------------------------------------
def test_a_run_costs_one_call_per_validation_and_two_to_close(tracker, monkeypatch):
    """create_run, one batch of params, one per validation, one closing batch (result,
    state, wall_seconds) and set_terminated: the closing figures never cost extra calls."""
    calls: Counter = Counter()
    client = tracker.client._client
    for name in ("create_run", "log_batch", "set_terminated", "log_metric", "log_param",
                 "set_tag", "log_inputs"):
        real = getattr(client, name)

        def counted(*args, _name=name, _real=real, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(client, name, counted)
    with start(tracker) as run:
        run.log_start({"lr": 0.01, "seed": 1}, metrics={"n_params": 10})
        for step in (10, 20, 30):
            run.log_validation(step, {"val_loss": 1.0 / step, "train_loss": 1.0})
        run.log_result(result(), "val_loss")
    assert calls == {"create_run": 1, "log_batch": 1 + 3 + 1, "set_terminated": 1}
