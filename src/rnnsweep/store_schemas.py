"""The two SQLite stores rnnsweep creates, MLflow's and Optuna's: what a complete schema of
each looks like and how the library builds one (store_init creates them in one step)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version as package_version


@dataclass(frozen=True)
class Schema:
    """What a complete store of one kind looks like, and how to build one."""

    name: str  # "MLflow", "Optuna": for messages
    version: Callable[[], str]  # the library's version: part of the cached schema's name
    head: Callable[[], str]  # the alembic revision a complete schema carries
    tables: Callable[[], set[str]]  # tables a complete schema has (at least)
    build: Callable[[str], None]  # builds the whole schema at a sqlite:/// URL
    upgrade: str  # the command that upgrades an older store, with {url}
    # Tables the schema itself writes rows to: None (none of its rows is data), or a query
    # selecting the rows that are (experiments other than MLflow's Default).
    bookkeeping: dict[str, str | None] = field(default_factory=dict)


def _mlflow_head() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def _mlflow_tables() -> set[str]:
    # Importing MLflow's db utilities imports its table models into Base.metadata.
    import mlflow.store.db.utils  # noqa: F401
    from mlflow.store.db.base_sql_model import Base

    return set(Base.metadata.tables)


def _build_mlflow(url: str) -> None:
    """What MLflow's SqlAlchemyStore does on a database without its tables: the initial
    tables, every migration, then the revision read back (raises unless at head)."""
    from mlflow.store.db import utils

    engine = utils.create_sqlalchemy_engine(url)
    try:
        utils._initialize_tables(engine)
        utils._verify_schema(engine)
    finally:
        engine.dispose()


def _optuna_alembic_dir() -> str:
    import optuna.storages._rdb as rdb

    return os.path.join(os.path.dirname(rdb.__file__), "alembic")


def _optuna_head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(_optuna_alembic_dir()).get_current_head()
    assert head is not None
    return head


def _optuna_tables() -> set[str]:
    from optuna.storages._rdb.models import BaseModel

    return set(BaseModel.metadata.tables)


def _build_optuna(url: str) -> None:
    from optuna.storages import RDBStorage

    storage = RDBStorage(url)  # tables, version_info and the alembic stamp
    storage.remove_session()
    storage.engine.dispose()


MLFLOW = Schema(
    name="MLflow", version=partial(package_version, "mlflow"), head=_mlflow_head,
    tables=_mlflow_tables, build=_build_mlflow,
    upgrade="mlflow db upgrade {url}",
    # The schema writes the default workspace and experiment 0 ("Default").
    bookkeeping={"alembic_version": None, "workspaces": None,
                 "experiments": "SELECT 1 FROM experiments WHERE experiment_id != 0"},
)
OPTUNA = Schema(
    name="Optuna", version=partial(package_version, "optuna"), head=_optuna_head,
    tables=_optuna_tables, build=_build_optuna,
    upgrade="optuna storage upgrade --storage {url}",
    bookkeeping={"alembic_version": None, "version_info": None},
)


def drop_cached_mlflow_engine(url: str) -> None:
    """MLflow caches one engine per URL for the process; its pooled connections would still
    point at the file that was moved aside."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engine = getattr(SqlAlchemyStore, "_engine_map", {}).get(url)
    if engine is not None:
        engine.dispose()
