"""Ctrl-C and SIGTERM as an exception that every layer lets through to the job runner.

Lightning turns a KeyboardInterrupt inside `fit` into `sys.exit(1)` and Optuna treats it
as a failed trial; a BaseException of our own passes both, so the objective can close the
trial's run as KILLED and the process can exit with the shell's 128 + signal number.
"""

from __future__ import annotations

import signal
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):  # noqa: N818 - a signal, not an error
    """Raised by the signal handler; `exit_code` is 130 for SIGINT, 143 for SIGTERM."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def _raise(signum: int, frame: FrameType | None) -> None:
    # A second signal of the same kind while closing runs stops at once, as users expect.
    signal.signal(signum, signal.SIG_DFL)
    raise Interrupted(signum)


def install_handlers() -> None:
    """Route SIGINT and SIGTERM to `Interrupted` (main thread only, as Python requires)."""
    for signum in HANDLED:
        signal.signal(signum, _raise)
