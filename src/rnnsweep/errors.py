"""Errors the command line reports as one line, and the rule that tells a trial's failure
from the infrastructure's.

The rule (also in docs/resuming.md):

- A trial's fault: anything its training raises: a NaN/inf loss (NonFiniteLossError), CUDA
  out of memory, a value the model or optimiser rejects. The trial ends FAIL with its
  reason, counts against `search.max_failure_rate`, and the study goes on.
- The infrastructure's fault (StoreError): a store that cannot do its work: the MLflow
  tracking store or its artifact store, or the Optuna storage, is unwritable, full, gone or
  refuses the connection; a disk that is full or read-only (any OSError from a store call; a
  disk-class OSError anywhere in a trial). Retrying the next trial would fail the same way,
  so the study stops at once: the running trial is ended as interrupted (not counted,
  re-queued with the same parameters while search.retry_failed_trials allows), and the
  command prints one line naming the store and exits 1. A rerun resumes.
"""

from __future__ import annotations

import errno
import sqlite3


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and what is allowed."""


class DataError(ValueError):
    """A dataset file or generated dataset is malformed; the message names the file."""


class StoreError(BaseException):
    """A store failed (the infrastructure's fault, never a trial's); the study stops at once.

    A BaseException, like rnnsweep.signals.Interrupted: Optuna's `catch=(Exception,)`
    would record it as one more failed trial and start the next, and Lightning and other
    `except Exception` handlers would record it too, so it passes them all to the job runner.
    """

    def __init__(self, store: str, reason: str) -> None:
        from rnnsweep.redact import redact

        self.store, self.reason = redact(store), redact(reason)
        super().__init__(f"{self.store} failed: {self.reason}")


# OSErrors that say the disk (not the code) is at fault, wherever they come from.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES,
               errno.EPERM}
# MLflow's error codes for a store that could not serve the request.
MLFLOW_UNAVAILABLE = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR"}


def _chain(err: BaseException) -> list[BaseException]:
    """err, then what it was raised from (or while handling), down to the first cause."""
    out: list[BaseException] = []
    e: BaseException | None = err
    while e is not None and all(e is not seen for seen in out):
        out.append(e)
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return out


def _is_database_failure(e: BaseException) -> bool:
    """A database connection or file that failed (not a rejected statement)."""
    import sqlalchemy.exc as sa  # lazily: the command line imports this module before any store

    failed = (sa.OperationalError, sa.InterfaceError, sa.TimeoutError, sa.DisconnectionError,
              sqlite3.OperationalError, sqlite3.InterfaceError)
    return (isinstance(e, failed)
            or (isinstance(e, sa.DBAPIError) and e.connection_invalidated)
            # A file that is no database ("file is not a database", "disk image is malformed").
            or type(e) is sqlite3.DatabaseError)


def _is_mlflow_unavailable(e: BaseException) -> bool:
    """MLflow's own "the store could not serve this": TEMPORARILY_UNAVAILABLE (its database
    failed), or a tracking server's reply of INTERNAL_ERROR. A local MlflowException without
    a code also reads INTERNAL_ERROR, so that alone is not enough."""
    if not type(e).__module__.startswith("mlflow."):
        return False
    code = getattr(e, "error_code", None)
    if code == "TEMPORARILY_UNAVAILABLE":
        return True
    from_server = type(e).__name__ == "RestException" or str(e).startswith("API request to")
    return code in MLFLOW_UNAVAILABLE and from_server


def infrastructure_cause(err: BaseException, store_call: bool = False) -> BaseException | None:
    """The exception in err's chain that makes it the infrastructure's fault, or None; the
    deepest one (closest to the failure: "disk I/O error", "Connection refused").

    store_call: err came out of a call to a store (MlflowClient, Optuna's storage), where
    every OSError but a missing file (connection refused, permission, disk full) is the
    store's. Elsewhere only a database failure or a disk-class OSError (DISK_ERRNOS) is.
    """
    found = None
    for e in _chain(err):
        if isinstance(e, StoreError):
            return e
        # A file the call asked for and that is not there is a request the store refused.
        missing = isinstance(e, FileNotFoundError)
        if (_is_database_failure(e) or _is_mlflow_unavailable(e)
                or (isinstance(e, OSError)
                    and ((store_call and not missing) or e.errno in DISK_ERRNOS))):
            found = e
    return found


def first_line(err: BaseException) -> str:
    """`Type: first line of the message`, SQLAlchemy's hints left out."""
    text = str(err).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # SQLAlchemy puts its hint "(raised as a result of Query-invoked autoflush ...)" first.
    lines = [ln for ln in lines if not ln.startswith("(raised as a result of")] or lines
    name = type(err).__name__
    return f"{name}: {lines[0]}" if lines else name


def store_error(err: BaseException, store: str, store_call: bool = False) -> StoreError | None:
    """A StoreError naming `store` when err is the infrastructure's fault, else None."""
    cause = infrastructure_cause(err, store_call)
    if cause is None:
        return None
    if isinstance(cause, StoreError):
        return cause
    return StoreError(store, first_line(cause))
