"""Create a SQLite store in one step, and rebuild one that a crash left half-built.

MLflow and Optuna build a new SQLite schema one statement at a time (pysqlite commits each
CREATE and ALTER on its own, so their migration "transaction" is not one), and a process
killed meanwhile leaves a file that every later open trips over ("table logged_models
already exists", "duplicate column name"). Here the schema is built in a temporary file
beside the store, under the store's cross-process lock, and renamed onto the store's name
only once complete: a kill leaves no store or a complete one, plus at most a temporary file
that the next creator (holding the same lock) removes.

A store left half-built by an earlier crash (before this module existed) and holding no
data is moved aside, never deleted, and built again; one that holds data is refused
(ConfigError, exit 2). A file SQLite cannot read (not a database, locked by another
process) is never touched: the preflight refuses it, and a job leaves it to the store's own
open to report.

An empty schema is the same bytes for every store of one library version (MLflow's
Default experiment, which names its folder, is added on the store's first open), so the
first build is kept in the user's cache directory and later stores start as a copy of it:
MLflow's migrations take about 2 s of CPU per new store. A cached copy is used only when it
is a complete schema at the library's revision with no data; otherwise it is built again.
RNNSWEEP_STORE_CACHE=off builds every store from scratch.

PostgreSQL and MySQL stores are left to MLflow and Optuna (docs/resuming.md).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rnnsweep.errors import ConfigError, first_line
from rnnsweep.redact import redact
from rnnsweep.store_schemas import Schema

log = logging.getLogger(__name__)

SQLITE = "sqlite:///"
CREATING = "creating"
INTERRUPTED = "interrupted"
# Files SQLite keeps beside a database; a hot journal must stay with its own database.
SIDECARS = ("-journal", "-wal", "-shm")


@dataclass
class State:
    """What inspect_store found."""

    problems: list[str]  # why the schema is incomplete; empty: complete
    data: dict[str, int]  # table -> rows of recorded data (filled only when incomplete)


def sqlite_file(url: str) -> Path | None:
    """The database file of a sqlite:/// URL (its query string left out), else None."""
    if not url.startswith(SQLITE):
        return None
    return Path(url[len(SQLITE) :].split("?", 1)[0])


def _with_file(url: str, path: Path) -> str:
    query = url.partition("?")[2]
    return f"{SQLITE}{path}" + (f"?{query}" if query else "")


def _connect(db: Path, timeout: float) -> sqlite3.Connection:
    # mode=rw never creates the file; it rolls back a hot journal that a kill left, as any
    # store's first open would, and falls back to read-only on a write-protected file.
    return sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=timeout)


def inspect_store(db: Path, schema: Schema, timeout: float = 10.0,
                  count_data: bool = False) -> State:
    """How complete the store at `db` is, and (when incomplete, or `count_data`) what data
    it holds.

    Raises sqlite3.Error when the file cannot be read as SQLite: not a database, locked by
    another process past `timeout`, unreadable."""
    con = _connect(db, timeout)
    try:
        tables = {name for (name,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        problems = []
        expected = schema.tables()
        absent = expected - tables
        if absent:
            shown = ", ".join(sorted(absent)[:3]) + (", ..." if len(absent) > 3 else "")
            problems.append(f"{len(absent)} tables missing: {shown}")
        revision = None
        if "alembic_version" in tables:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
        head = schema.head()
        if revision != head:
            problems.append(f"schema revision {revision or 'none'}, expected {head}")
        if "version_info" in expected and "version_info" in tables and not (
                con.execute("SELECT 1 FROM version_info").fetchone()):
            problems.append("no version_info row")
        data = _data(con, tables, schema) if problems or count_data else {}
        return State(problems, data)
    finally:
        con.close()


def _data(con: sqlite3.Connection, tables: set[str], schema: Schema) -> dict[str, int]:
    """Rows of every table but the schema's own bookkeeping; counted up to 1000 each (a
    large store is refused either way)."""
    found = {}
    for table in sorted(tables):
        if table in schema.bookkeeping and schema.bookkeeping[table] is None:
            continue
        quoted = '"' + table.replace('"', '""') + '"'
        sql = schema.bookkeeping.get(table) or f"SELECT 1 FROM {quoted}"
        try:
            n = con.execute(f"SELECT COUNT(*) FROM ({sql} LIMIT 1000)").fetchone()[0]
        except sqlite3.OperationalError:  # a column its query names is not there yet
            n = 1  # unknown: counted as data, so the store is refused, never moved
        if n:
            found[table] = n
    return found


def _describe_data(data: dict[str, int]) -> str:
    return ", ".join(f"{table}: {n}" for table, n in sorted(data.items(), key=lambda x: -x[1]))


def _refusal(db: Path, url: str, key: str, schema: Schema, state: State) -> ConfigError:
    return ConfigError(
        f"{key}={redact(url)}: an incomplete {schema.name} store "
        f"({'; '.join(state.problems)}) that holds data ({_describe_data(state.data)}), left "
        f"as it is: if an older {schema.name} made it, upgrade it with "
        f"`{schema.upgrade.format(url=redact(url))}`; otherwise move {db} aside and rerun "
        "to start a new store"
    )


def preflight_sqlite(url: str, key: str, schema: Schema, report_unreadable: bool = True
                     ) -> bool:
    """Before any job runs, changing nothing: True when the store at `url` exists and is
    complete, or cannot be read and `report_unreadable` is False (the caller goes on
    checking it); False when there is nothing to check (no file yet, or a half-built one
    with no data, which the first job rebuilds). Raises ConfigError for a half-built store
    that holds data, or a file SQLite cannot read (not a database, locked)."""
    db = sqlite_file(url)
    if db is None or not db.exists():
        return False
    try:
        state = inspect_store(db, schema)
    except sqlite3.Error as err:
        if not report_unreadable:
            return True
        raise ConfigError(f"{key}={redact(url)}: cannot open: {first_line(err)}") from None
    if not state.problems:
        return True
    if state.data:
        raise _refusal(db, url, key, schema, state)
    return False


def _remove_stray(db: Path) -> None:
    """Temporary files of creations killed earlier: the caller holds the store's lock, and
    every creator holds it until its file is renamed, so none of them is in use."""
    for path in db.parent.glob(f".{glob.escape(db.name)}.{CREATING}-*"):
        path.unlink(missing_ok=True)


def _aside_name(db: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = db.with_name(f"{db.name}.{INTERRUPTED}-{stamp}")
    n = 1
    while any(Path(f"{aside}{s}").exists() for s in ("", *SIDECARS)):
        n += 1
        aside = db.with_name(f"{db.name}.{INTERRUPTED}-{stamp}-{n}")
    return aside


def _move_aside(db: Path) -> Path:
    """Rename `db` and its sidecar files to `<name>.interrupted-<time>`; sidecars first, so
    that a stale journal never meets the new store built at `db`."""
    aside = _aside_name(db)
    for suffix in SIDECARS:
        if Path(f"{db}{suffix}").exists():
            os.replace(f"{db}{suffix}", f"{aside}{suffix}")
    if db.exists():
        os.replace(db, aside)
    return aside


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cached_schema(schema: Schema) -> Path | None:
    """Where the empty schema of this library version is cached; None when switched off."""
    if os.environ.get("RNNSWEEP_STORE_CACHE", "").lower() in ("off", "0", "false", "no"):
        return None
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = f"{schema.name.lower()}-{schema.version()}-{schema.head()}.db"
    return root / "rnnsweep" / "stores" / name


def _usable_template(template: Path, schema: Schema) -> bool:
    """A complete schema at the current revision whose only rows are the schema's own."""
    try:
        state = inspect_store(template, schema, timeout=1.0, count_data=True)
    except sqlite3.Error:
        return False
    return not state.problems and not state.data


def _keep_template(built: Path, template: Path) -> None:
    """Publish a copy of a freshly built schema as the cache (renamed whole, like a store);
    a cache that cannot be written is skipped."""
    part = template.with_name(f".{template.name}.{CREATING}-{os.getpid()}")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, part)
        os.replace(part, template)
    except OSError as err:
        log.debug("schema cache %s not written: %s", template, err)
        with contextlib.suppress(OSError):  # the folder itself may be what failed
            part.unlink(missing_ok=True)


def _build_schema(tmp: Path, url: str, schema: Schema) -> None:
    """The schema at `tmp`: a copy of the cached one when usable, else built (and cached)."""
    template = cached_schema(schema)
    try:
        if template is not None and template.is_file() and _usable_template(template, schema):
            shutil.copyfile(template, tmp)
            return
    except OSError as err:  # an unreadable cache is no reason to fail: build instead
        log.debug("schema cache %s not used: %s", template, err)
        tmp.unlink(missing_ok=True)
    schema.build(_with_file(url, tmp))
    if template is not None and tmp.exists() and not Path(f"{tmp}-wal").exists():
        _keep_template(tmp, template)


def _create(db: Path, url: str, schema: Schema) -> None:
    """Build the schema in `.<name>.creating-<pid>` and rename it onto `db` when complete."""
    if any(Path(f"{db}{s}").exists() for s in SIDECARS):
        # A journal whose database is gone would be replayed into the new one.
        aside = _move_aside(db)
        log.info("moved the leftover journal of a missing %s store to %s", schema.name, aside)
    tmp = db.with_name(f".{db.name}.{CREATING}-{os.getpid()}")
    try:
        _build_schema(tmp, url, schema)
        if not tmp.exists():  # the URL's query pointed the build elsewhere
            raise RuntimeError(f"building the {schema.name} schema did not write {tmp}")
        if Path(f"{tmp}-wal").exists():  # pages not in the file yet: renaming would lose them
            raise RuntimeError(f"{tmp}-wal is left after building the {schema.name} schema")
        _fsync(tmp)  # the rename must never publish a file whose pages are not on disk
        os.replace(tmp, db)
        _fsync(db.parent, directory=True)
    finally:
        for path in (tmp, *(Path(f"{tmp}{s}") for s in SIDECARS)):
            path.unlink(missing_ok=True)


def ensure_sqlite_store(url: str, key: str, schema: Schema,
                        on_new_file: Callable[[], None] | None = None) -> None:
    """Make the SQLite store at `url` exist with a complete schema; the caller holds the
    store's lock (rnnsweep.locks). Not SQLite: nothing to do.

    A missing store is built whole (see the module docstring). A half-built one that holds
    no data is moved to `<name>.interrupted-<time>` and built again; one that holds data
    raises ConfigError. A file SQLite cannot read (not a database, locked by another
    process) is left untouched for the store's own open to report. `on_new_file`: called
    once a new file holds the store's name (to drop engines cached on the old one)."""
    db = sqlite_file(url)
    if db is None:
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    _remove_stray(db)
    if db.exists():
        try:
            state = inspect_store(db, schema, timeout=30.0)
        except sqlite3.Error:
            return  # not ours to judge: the store's own open names the problem
        if not state.problems:
            return
        if state.data:
            raise _refusal(db, url, key, schema, state)
        aside = _move_aside(db)
        log.info("%s store %s was incomplete (%s: an interrupted creation, or an older %s) "
                 "and held no data: moved to %s and built again", schema.name, db,
                 "; ".join(state.problems), schema.name, aside.name)
    _create(db, url, schema)
    if on_new_file is not None:
        on_new_file()
