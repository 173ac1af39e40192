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
from typing import Any

from lightning.pytorch.callbacks import Callback

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
    saved, _State.deferring = _State.deferring, True
    try:
        yield
    finally:
        _State.deferring = saved
    if not saved:
        raise_pending()


class BatchBoundaryCheck(Callback):
    """Lightning callback: a held-back Ctrl-C/SIGTERM stops training after the current batch."""

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        raise_pending()

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        raise_pending()


def install_handlers() -> None:
    """Route SIGINT and SIGTERM to `Interrupted` (main thread only, as Python requires)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in HANDLED:
        signal.signal(signum, _raise)
