"""Ctrl-C and SIGTERM as an exception that every layer lets through to the job runner.

Lightning turns a KeyboardInterrupt inside `fit` into `sys.exit(1)` and Optuna treats it
as a failed trial; a BaseException of our own passes both, so the objective can close the
trial's run as KILLED and the process can exit with the shell's 128 + signal number.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

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


def _raise(signum: int, frame: FrameType | None) -> None:
    # A second signal of the same kind while closing runs stops at once, as users expect.
    signal.signal(signum, signal.SIG_DFL)
    if _State.deferring:
        _State.pending = signum
        return
    raise Interrupted(signum)


def _raise_pending() -> None:
    if _State.pending is not None:
        signum, _State.pending = _State.pending, None
        raise Interrupted(signum)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a signal back (e.g. inside Optuna between creating a trial and calling the
    objective, where an exception would leave the trial RUNNING) and raise it on exit."""
    saved, _State.deferring = _State.deferring, True
    try:
        yield
    finally:
        _State.deferring = saved
    if not saved:
        _raise_pending()


@contextmanager
def immediate() -> Iterator[None]:
    """Inside `deferred`: code that closes its own runs on Interrupted (the objective)."""
    saved, _State.deferring = _State.deferring, False
    try:
        _raise_pending()
        yield
    finally:
        _State.deferring = saved


def install_handlers() -> None:
    """Route SIGINT and SIGTERM to `Interrupted` (main thread only, as Python requires)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in HANDLED:
        signal.signal(signum, _raise)
