"""Short cross-process locks for find-or-create steps that the stores cannot make atomic.

MLflow has no unique key on tags and both stores create their schema with check-then-create,
so two workers starting at once could make two parent runs or race on a fresh database.
The lock lives where every worker of a study already looks: a lock file beside a SQLite
database, or an advisory lock in a PostgreSQL/MySQL server.
"""

from __future__ import annotations

import fcntl
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy

SQLITE = "sqlite:///"


def _lock_key(name: str) -> int:
    return zlib.crc32(name.encode())  # stable across processes, unlike hash()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def store_lock(url: str, name: str) -> Iterator[None]:
    """Hold an exclusive lock named `name` in the store at `url` (an SQLAlchemy URL)."""
    if url.startswith(SQLITE):
        db = Path(url[len(SQLITE) :])
        with file_lock(db.with_name(f".{db.name}.lock")):
            yield
        return
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as con:
            dialect = engine.dialect.name
            if dialect == "postgresql":
                con.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _lock_key(name)})
            elif dialect == "mysql":
                con.execute(sqlalchemy.text("SELECT GET_LOCK(:k, 600)"), {"k": name[:64]})
            try:
                yield
            finally:
                if dialect == "postgresql":
                    con.execute(
                        sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key(name)}
                    )
                elif dialect == "mysql":
                    con.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:k)"), {"k": name[:64]})
    finally:
        engine.dispose()
