"""Ctrl-C and SIGTERM as an exception that every layer lets through to the job runner.

No heavy imports: train.py installs the sweep's handlers before its preflight.

Lightning turns a KeyboardInterrupt inside `fit` into `sys.exit(1)` and Optuna treats it
as a failed trial; a BaseException of our own passes both, so the objective can close the
trial's run as KILLED and the process can exit with the shell's 128 + signal number.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):  # noqa: N818 - a signal, not an error
    """Raised by the signal handler; `exit_code` is 130 for SIGINT, 143 for SIGTERM."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class _State:
    deferring = False
    pending: int | None = None
    # The first signal this process received: later ones of another kind are copies (a
    # terminal's Ctrl-C reaches every process of the group, the sweep forwards SIGTERM).
    received: int | None = None
    # A job runs in this process (rnnsweep.cli.run_job); a launcher worker is idle otherwise.
    in_job = False


def _received(signum: int) -> None:
    """Note the signal. Hydra's error report (hydra.main's run_and_report) would print
    whatever exception escapes it as a traceback and exit 1; once a signal has arrived, such
    an exception is its consequence (the handler's Interrupted turned into another error,
    e.g. OmegaConf's while Hydra composes a config), so Hydra is told to let it through to
    `exits_on_signal`, which ends the command with the one line and 128 + signum."""
    _State.received = signum
    os.environ["HYDRA_FULL_ERROR"] = "1"


def _raise(signum: int, frame: FrameType | None) -> None:
    if _State.received is not None and signum != _State.received:
        return  # already stopping; a copy must not interrupt the closing of runs
    # A second signal of the same kind while closing runs stops at once, as users expect.
    signal.signal(signum, signal.SIG_DFL)
    _received(signum)
    # Also pending when raised now: an exception raised from a handler can land where Python
    # swallows it (a weakref callback, a __del__), and the next safe point raises it again.
    _State.pending = signum
    if _State.deferring:
        return
    raise Interrupted(signum)


def raise_if_signalled() -> None:
    """An error caught after a signal arrived is the signal's consequence, not bad input:
    Hydra wraps the handler's Interrupted, raised while it composes a config, into a
    ConfigCompositionException, which the preflight would report as a config error (exit 2).
    Raise the signal instead."""
    if _State.received is not None:
        raise Interrupted(_State.received)


def raise_pending() -> None:
    """Raise a signal held back by `deferred`; called at points where no I/O is in flight."""
    if _State.pending is not None:
        signum, _State.pending = _State.pending, None
        raise Interrupted(signum)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold signals back while a trial runs and raise them at safe points: between training
    batches (`BatchBoundaryCheck`) or when the block ends. An exception raised in the middle
    of a database transaction would leave SQLite's write lock held while this process still
    has to record the interruption, and it would wait on itself."""
    outer = not _State.deferring
    with held():
        yield
    if outer:
        raise_pending()


@contextmanager
def held() -> Iterator[None]:
    """Hold signals back and leave them pending when the block ends: for work that creates
    something the next block closes (a study's parent run, created here and closed by
    run_lifecycle.study_run, which raises the pending signal first thing). A signal raised
    between the two would leave the run RUNNING for ever."""
    saved, _State.deferring = _State.deferring, True
    try:
        yield
    finally:
        _State.deferring = saved


STOP_SECONDS = 120  # how long a sweep waits for its workers to close their runs
STOP_MESSAGE = "runs closed; rerun the same command to resume"


def _workers() -> list[Any]:
    """This process's descendants that run jobs (a launcher's workers), not the resource
    trackers that ignore signals and end with their parent."""
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _stop_sweep(signum: int, frame: FrameType | None) -> None:
    """A sweep's own process (Hydra's launcher) on SIGINT/SIGTERM: with workers, forward
    SIGTERM to them, wait while they close their trials and runs, and exit 128 + signum
    with one line; without (starting up, composing, a basic launcher between jobs), raise
    Interrupted for `exits_on_signal` to report."""
    import psutil

    signal.signal(signum, signal.SIG_DFL)  # a second signal stops at once
    _received(signum)
    workers = _workers()
    if not workers:
        _State.pending = signum
        raise Interrupted(signum)
    for proc in workers:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            continue
    psutil.wait_procs(workers, timeout=STOP_SECONDS)
    print(f"{Interrupted(signum)}: {STOP_MESSAGE}", file=sys.stderr, flush=True)
    os._exit(128 + signum)  # the launcher's own clean-up would wait on the ended workers


# After a stop, joblib's resource tracker still cleans up the workers' semaphores, but it
# also prints a warning per kind; the one line of the stop is the message.
QUIET_TRACKER = "ignore:resource_tracker:UserWarning"


def install_sweep_handlers() -> None:
    """SIGINT/SIGTERM in the command's own process, from its start (train.py); a job that
    runs in this process installs `install_handlers` over it."""
    if threading.current_thread() is threading.main_thread():
        for signum in HANDLED:
            signal.signal(signum, _stop_sweep)
    sys.unraisablehook = _quiet_unraisable
    filters = [f for f in os.environ.get("PYTHONWARNINGS", "").split(",") if f]
    if QUIET_TRACKER not in filters:
        os.environ["PYTHONWARNINGS"] = ",".join([*filters, QUIET_TRACKER])


@contextmanager
def exits_on_signal() -> Iterator[None]:
    """train.py's outermost block: a signal that surfaced outside a job (Hydra composing the
    next job, the preflight) or was swallowed where Python ignores exceptions ends the
    command with one line and 128 + signum, never a traceback or exit 0."""
    try:
        yield
    except Interrupted as err:
        print(f"{err}: {STOP_MESSAGE}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
    except Exception:
        # Python wraps an exception raised inside some hooks (class creation's
        # __set_name__ gives a RuntimeError while an import runs): once a signal arrived,
        # whatever escapes is that signal's consequence. Otherwise it is a real error.
        if _State.received is None:
            raise
        err = Interrupted(_State.received)
        print(f"{err}: {STOP_MESSAGE}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
    if _State.received is not None:
        err = Interrupted(_State.received)
        print(f"{err}: {STOP_MESSAGE}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)


def stop_with_parent(interval: float = 1.0) -> None:
    """In a launcher's worker: when the sweep's process dies without forwarding a signal
    (kill -9, the OOM killer), SIGTERM this worker, which closes its trial and runs as for
    a preemption, instead of training on as an orphan. A thread that polls the parent pid
    rather than prctl(PR_SET_PDEATHSIG), which fires when the spawning *thread* ends."""
    parent = os.getppid()
    if getattr(stop_with_parent, "watching", False):
        return
    stop_with_parent.watching = True  # type: ignore[attr-defined]

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        if _State.in_job:
            os.kill(os.getpid(), signal.SIGTERM)  # the job closes its trial and runs
        while _State.in_job:
            time.sleep(interval / 10)
        # Idle, a worker would wait for tasks forever: its siblings hold its pipe open.
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="rnnsweep-parent-watch", daemon=True).start()


def job_started_in_worker() -> None:
    """A job starts in a launcher's worker: it ends with its parent (`stop_with_parent`)."""
    _State.in_job = True
    stop_with_parent()


def end_of_job_in_worker() -> None:
    """After a job in a launcher's worker process: idle, it has nothing to close, so SIGTERM
    ends it at once and Ctrl-C is left to the sweep's process (which forwards SIGTERM)."""
    _State.in_job = False
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _quiet_unraisable(unraisable: Any) -> None:
    """Our own Interrupted, raised by the handler where Python cannot propagate it (a
    weakref callback, a __del__), is pending and raised again at the next safe point: no
    "Exception ignored" traceback for it. Anything else goes to Python's own hook."""
    if isinstance(unraisable.exc_value, Interrupted):
        return
    _PREVIOUS_UNRAISABLE(unraisable)


_PREVIOUS_UNRAISABLE = sys.unraisablehook


def install_handlers() -> None:
    """Route SIGINT and SIGTERM to `Interrupted` (main thread only, as Python requires)."""
    if threading.current_thread() is not threading.main_thread():
        return
    # A job starts listening afresh; a signal still pending (swallowed before the job) stays.
    _State.received = None
    sys.unraisablehook = _quiet_unraisable
    for signum in HANDLED:
        signal.signal(signum, _raise)
