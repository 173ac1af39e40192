"""The embedded SQLite stores (Optuna's optuna.db, MLflow's mlflow.db) in WAL mode with
synchronous=NORMAL, for every SQLite connection SQLAlchemy opens in this process.

Why: in SQLite's default rollback-journal mode every commit syncs the database and its
journal, and a reader blocks the writer; a trial commits a few dozen small transactions
(Optuna's ask/report/tell, MLflow's run, params, metrics), so the syncs are most of its
bookkeeping. In WAL mode a commit appends to the log, readers (the report, the UI, the
dashboard) never block the workers, and with synchronous=NORMAL the log is synced at
checkpoints, not at each commit.

Why it is safe here: a commit in WAL mode survives the crash of its process (kill -9,
Ctrl-C): it is in the log file, which the next connection replays. Only an operating-system
crash or a power cut can lose the commits since the last checkpoint, and never corrupts the
file; a trial lost that way is failed and re-queued by the heartbeat like a killed one
(docs/resuming.md). WAL needs every process on one machine (the log's index is shared
memory), which an SQLite store already assumes: many machines use PostgreSQL. While a
job runs, recent commits live in `<store>.db-wal` beside the file (the last connection to
close folds them in): copy or back up a store with its `-wal` file, or when no job runs.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
_installed = False


def _set_pragmas(dbapi_connection: object, connection_record: object) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return  # PostgreSQL and other servers keep their own settings
    cursor = dbapi_connection.cursor()
    try:
        for pragma in PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def use_wal() -> None:
    """Install the pragmas for every SQLite connection opened from now on (once)."""
    global _installed
    if not _installed:
        event.listen(Engine, "connect", _set_pragmas)
        _installed = True
