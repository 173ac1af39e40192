"""Promises the docs make that no other test held: the thread policy, surplus trials and the
failure budget's exclusions, Ctrl-C held back during a trial and the second one stopping at
once, search.retry_failed_trials, the parent-run lock, and masking of a -m sweep's files.

In-process (no training: train_model is replaced), except the second Ctrl-C, which is a
process's exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import optuna
import pytest
from conftest import ROOT, clean_env
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from rnnsweep import threads
from rnnsweep.search.objective import (
    INTERRUPTED_ATTR,
    REASON_ATTR,
    SURPLUS_ATTR,
    failed_by_itself,
    is_surplus,
)
from rnnsweep.search.runner import FailureBudget
from rnnsweep.signals import Interrupted

# -- the thread policy (rnnsweep.threads) ------------------------------------------------------


def _threads(num_threads=None) -> int:
    return threads.resolve_num_threads(OmegaConf.create({"num_threads": num_threads}))


@pytest.fixture
def eight_cores(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.delenv(threads.LOCAL_WORKERS_ENV, raising=False)
    yield
    HydraConfig.instance().cfg = None  # type: ignore[assignment]


def _under_launcher(launcher: dict) -> None:
    from hydra.conf import HydraConf

    cfg = OmegaConf.create({"hydra": OmegaConf.structured(HydraConf)})
    cfg.hydra.launcher = launcher
    HydraConfig.instance().set_config(cfg)


def test_threads_setting_wins_else_cores_shared_by_local_workers(eight_cores, monkeypatch):
    assert _threads() == 8  # one worker, not under a launcher: every core
    assert _threads(3) == 3
    monkeypatch.setenv(threads.LOCAL_WORKERS_ENV, "2")
    assert _threads() == 4 and _threads(1) == 1
    monkeypatch.setenv(threads.LOCAL_WORKERS_ENV, "3")
    assert _threads() == 2  # 8 // 3
    monkeypatch.setenv(threads.LOCAL_WORKERS_ENV, "16")
    assert _threads() == 1  # never 0
    monkeypatch.setenv(threads.LOCAL_WORKERS_ENV, "two")
    with pytest.raises(ValueError, match="RNNSWEEP_LOCAL_WORKERS='two' is invalid"):
        _threads()


@pytest.mark.parametrize(("launcher", "expected"), [
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
      "n_jobs": 2}, 4),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
      "n_jobs": -1}, 1),  # joblib: one job per core
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
      "n_jobs": 32}, 1),  # bounded by the cores
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8),
], ids=["joblib-2", "joblib-all", "joblib-over", "basic"])
def test_joblib_launcher_jobs_share_the_cores(eight_cores, monkeypatch, launcher, expected):
    _under_launcher(launcher)
    assert _threads() == expected
    monkeypatch.setenv(threads.LOCAL_WORKERS_ENV, "8")  # the variable comes first
    assert _threads() == 1


# -- surplus trials and the failure budget ---------------------------------------------------

DIST = {"x": FloatDistribution(0.0, 1.0)}


def _add(study: optuna.Study, state: TrialState, **attrs) -> None:
    study.add_trial(create_trial(state=state, params={"x": 0.5}, distributions=DIST,
                                 value=1.0 if state == TrialState.COMPLETE else None,
                                 user_attrs=attrs))


def test_a_trial_is_surplus_once_trials_ahead_of_it_fill_the_study():
    study = optuna.create_study()
    _add(study, TrialState.COMPLETE)                 # 0
    _add(study, TrialState.FAIL, **{REASON_ATTR: "x"})  # 1: failed, does not fill a slot
    _add(study, TrialState.RUNNING)                  # 2
    _add(study, TrialState.WAITING)                  # 3
    _add(study, TrialState.RUNNING)                  # 4
    # Ahead of 4: 0 finished, 2 running, 3 waiting -> 3.
    assert is_surplus(study, 4, 3) and not is_surplus(study, 4, 4)
    # Ahead of 2: only the finished 0 (1 failed; 3 and 4 come later).
    assert not is_surplus(study, 2, 2) and is_surplus(study, 2, 1)
    # Of two trials racing for the last slot, exactly the later one yields.
    assert not is_surplus(study, 2, 2) and is_surplus(study, 4, 3)
    _add(study, TrialState.PRUNED)                   # 5: finished, counts whatever its number
    assert is_surplus(study, 2, 2)


def test_only_trials_that_failed_by_themselves_count_against_the_study(monkeypatch):
    study = optuna.create_study()
    _add(study, TrialState.FAIL, **{REASON_ATTR: "NonFiniteLossError: nan"})
    _add(study, TrialState.FAIL, **{REASON_ATTR: "interrupted", INTERRUPTED_ATTR: True})
    _add(study, TrialState.FAIL, **{SURPLUS_ATTR: True})  # surplus: no reason recorded
    _add(study, TrialState.FAIL)  # failed as stale: its worker died
    _add(study, TrialState.COMPLETE)
    assert [failed_by_itself(t) for t in study.trials] == [True, False, False, False, False]
    monkeypatch.setattr(study, "stop", lambda: None)  # outside optimize here
    # 1 of the 2 counted trials failed: under a rate of 0.6, over 0.4 (with min_trials 2).
    budget = FailureBudget(max_rate=0.6, min_trials=2, max_failures=100)
    budget(study, study.trials[-1])
    assert budget.message is None
    strict = FailureBudget(max_rate=0.4, min_trials=2, max_failures=100)
    strict(study, study.trials[-1])
    assert strict.message is not None and "1 of 2 trials failed" in strict.message
    assert "NonFiniteLossError: nan" in strict.message
    for _ in range(3):  # interrupted, surplus and stale trials never exhaust the budget
        _add(study, TrialState.FAIL, **{REASON_ATTR: "store failed", INTERRUPTED_ATTR: True})
        _add(study, TrialState.FAIL, **{SURPLUS_ATTR: True})
    capped = FailureBudget(max_rate=1.0, min_trials=2, max_failures=2)
    capped(study, study.trials[-1])
    assert capped.message is None
    _add(study, TrialState.FAIL, **{REASON_ATTR: "RuntimeError: boom"})
    capped(study, study.trials[-1])
    assert capped.message is not None and "2 of 3 trials failed" in capped.message


# -- a real study context, trials with their training replaced --------------------------------

def _smoke_config(*overrides: str):
    from rnnsweep.job import typed_config

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            return typed_config(compose("config", overrides=[
                "experiment=smoke", "cell=gru", "search.reeval_seeds=0", *overrides]))
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def empty_stores(tmp_path_factory):
    """An mlruns/ with both stores' schemas, made once per module: migrations take seconds."""
    from rnnsweep.search.study import make_storage
    from rnnsweep.tracking import Tracker

    root = tmp_path_factory.mktemp("stores")
    mp = pytest.MonkeyPatch()
    mp.setenv("RNNSWEEP_ROOT", str(root))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        cfg = _smoke_config()
        Tracker(cfg.tracking)
        make_storage(cfg.search).remove_session()
    finally:
        mp.undo()
    return root / "mlruns"


@pytest.fixture
def make_ctx(tmp_path, monkeypatch, empty_stores):
    """make_ctx(*overrides): a smoke job's config, data, tracker and study, in tmp_path."""
    from rnnsweep.job import Job, open_study_context

    shutil.copytree(empty_stores, tmp_path / "mlruns")
    monkeypatch.setenv("RNNSWEEP_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def make(*overrides: str):
        return open_study_context(Job(_smoke_config(*overrides)), [])

    yield make
    GlobalHydra.instance().clear()


def _training(monkeypatch, behaviour) -> None:
    """train_model replaced by `behaviour(trial_number)`, which raises or returns a value."""
    import rnnsweep.search.objective as objective
    from rnnsweep.training import TrainResult

    def train_model(cfg, datamodule, seed, callbacks=(), on_validation=None, trial=None):
        value = behaviour(trial.number)
        return TrainResult(best_value=value, best_step=10, gap_at_best=0.0, optimizer_steps=10,
                           budget_steps=30, seconds_per_step=0.01, n_params=10, hidden_size=8,
                           test_metrics={"test_loss": value})

    monkeypatch.setattr(objective, "train_model", train_model)


def _trial_runs(ctx) -> dict[int, list]:
    from rnnsweep.tracking import find_tagged

    out: dict[int, list] = {}
    for run in find_tagged(ctx.tracker, ctx.experiment,
                           {"study_name": ctx.study_name, "role": "trial"}):
        out.setdefault(int(run.data.tags["trial_number"]), []).append(run)
    return out


def test_a_surplus_trial_never_runs_leaves_no_run_and_is_not_counted(make_ctx, monkeypatch):
    from rnnsweep.search.objective import Objective

    study, ctx = make_ctx("search.n_trials=2")
    calls: list[int] = []
    _training(monkeypatch, lambda n: calls.append(n) or 0.5)
    # Two trials finished by another worker while this one asked for a third.
    for _ in range(2):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.4, params={},
                                     distributions={}))
    study.optimize(Objective(ctx), n_trials=1, catch=(Exception,))
    surplus = study.trials[-1]
    assert calls == []
    assert surplus.state == TrialState.FAIL and surplus.user_attrs[SURPLUS_ATTR] is True
    assert not failed_by_itself(surplus) and REASON_ATTR not in surplus.user_attrs
    assert _trial_runs(ctx) == {}


@pytest.mark.slow  # trains or runs a study in-process for seconds
@pytest.mark.parametrize("retry", [0, 1, 2])
def test_retry_failed_trials_requeues_an_interrupted_trial_with_its_parameters(
    make_ctx, monkeypatch, retry
):
    """Each interruption ends its trial (FAIL, interrupted, its run KILLED) and queues the
    same parameters again, at most search.retry_failed_trials times in a row."""
    from rnnsweep.search.runner import run_study

    study, ctx = make_ctx("search.n_trials=3", f"search.retry_failed_trials={retry}")

    def interrupted(number: int) -> float:
        raise Interrupted(signal.SIGINT)

    _training(monkeypatch, interrupted)
    for _ in range(retry + 2):
        with pytest.raises(Interrupted):
            run_study(study, ctx)
    trials = study.get_trials()
    first = trials[0]
    assert first.params and first.user_attrs[INTERRUPTED_ATTR] is True
    # The original, then `retry` re-queued copies; the next run samples anew.
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == first.number]
    assert len(retried) == retry
    for t in retried:
        assert t.params == first.params
    assert [t.state for t in [first, *retried]] == [TrialState.FAIL] * (retry + 1)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # Left queued: the copy of the last run's trial, when retries are allowed at all.
    assert len([t for t in trials if t.state == TrialState.WAITING]) == (1 if retry else 0)
    assert not [t for t in trials if failed_by_itself(t)]
    runs = _trial_runs(ctx)
    for t in trials:
        if t.state == TrialState.FAIL:
            (run,) = runs[t.number]
            assert run.info.status == "KILLED" and run.data.tags["state"] == "FAIL"
    if retry:
        assert trials[1].params == first.params  # the next run took the queued copy first


# -- Ctrl-C: held back during a trial, a second one stops at once ---------------------------

@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_a_trial_is_held_until_a_safe_point(handlers, sig, code):
    from rnnsweep.signals import deferred, install_handlers, raise_pending

    install_handlers()
    reached = []
    with pytest.raises(Interrupted) as err:
        with deferred():
            os.kill(os.getpid(), sig)
            time.sleep(0.01)  # the handler runs between bytecodes of this thread
            reached.append("after the signal")  # no exception in the middle of I/O
            # The first signal restored the default action: a second one would stop at once.
            assert signal.getsignal(sig) == signal.SIG_DFL
    assert reached == ["after the signal"]
    assert err.value.exit_code == code
    raise_pending()  # raised once, then nothing is pending


def test_a_second_ctrl_c_while_closing_stops_the_process_at_once(tmp_path):
    script = textwrap.dedent("""
        import os, signal, sys, time
        from rnnsweep.signals import deferred, install_handlers
        install_handlers()
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            print("first held", flush=True)
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C again
            time.sleep(5)
            print("still running", flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=clean_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGINT, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout == "first held\n"


# -- the parent-run lock ----------------------------------------------------------------------

def test_workers_starting_together_make_one_parent_run(make_ctx, monkeypatch):
    """find_or_create_parent under store_lock: with the search widened to 0.3 s, two workers
    that both look before either creates would make two parents without the lock."""
    from rnnsweep.search.runner import find_or_create_parent
    from rnnsweep.tracking import PARENT_ROLE, Tracker, find_tagged

    study, ctx = make_ctx()
    cfg = _smoke_config()
    name = "adding-small-gru-racing"
    trackers = [Tracker(cfg.tracking), Tracker(cfg.tracking)]
    for tracker in trackers:
        real = tracker.find_parent

        def slow(experiment, study_name, real=real):
            found = real(experiment, study_name)
            time.sleep(0.3)
            return found

        monkeypatch.setattr(tracker, "find_parent", slow)
    barrier = threading.Barrier(2)
    ids: list[str] = []
    errors: list[BaseException] = []

    def worker(tracker) -> None:
        try:
            barrier.wait()
            ids.append(find_or_create_parent(tracker, "adding", name, dict(ctx.base_tags),
                                             cfg.search.storage, "seed: 0\n"))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    workers = [threading.Thread(target=worker, args=(t,)) for t in trackers]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert errors == [] and len(ids) == 2
    assert ids[0] == ids[1]
    parents = find_tagged(ctx.tracker, "adding", {"study_name": name, "role": PARENT_ROLE})
    assert [p.info.run_id for p in parents] == [ids[0]]


def test_the_lock_serialises_holders(tmp_path):
    from rnnsweep.locks import store_lock

    url = f"sqlite:///{tmp_path}/optuna.db"
    order: list[str] = []
    def second() -> None:
        with store_lock(url, "a"):
            order.append("second")

    with store_lock(url, "a"):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first released")
    t.join(10)
    assert order == ["first released", "second"]


# -- masking a -m sweep's files ----------------------------------------------------------------

def test_a_sweeps_saved_files_are_masked(tmp_path):
    """multirun.yaml and each job's .hydra/*.yaml, as a -m sweep's job rewrites them."""
    from rnnsweep.cli import _redact_hydra_files

    secret = "Se/cret9"
    url = f"postgresql://rnnsweep:{secret}@127.0.0.1:5432/optuna"
    sweep_dir, job_dir = tmp_path / "sweep", tmp_path / "sweep" / "0"
    (job_dir / ".hydra").mkdir(parents=True)
    (sweep_dir / "multirun.yaml").write_text(
        f"hydra:\n  overrides:\n    task:\n    - search.storage='{url}'\n")
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (job_dir / ".hydra" / name).write_text(f"- search.storage={url}\n")
    hc = OmegaConf.create({"sweep": {"dir": str(sweep_dir)}, "output_subdir": ".hydra",
                           "runtime": {"output_dir": str(job_dir)}})
    _redact_hydra_files(hc)
    files = [sweep_dir / "multirun.yaml", *(job_dir / ".hydra").glob("*.yaml")]
    assert len(files) == 4
    for path in files:
        text = path.read_text()
        assert secret not in text and "rnnsweep:***@127.0.0.1:5432/optuna" in text, path
