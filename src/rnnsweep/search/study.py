"""Create or load the Optuna study of one condition, in the configured storage."""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from omegaconf import DictConfig
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from rnnsweep.errors import ConfigError, StoreError, infrastructure_cause, store_error
from rnnsweep.locks import store_lock
from rnnsweep.redact import redact
from rnnsweep.search.fair_pruner import guarantee_sampler_trials
from rnnsweep.search.repeats import repeat_suffix, sampler_seed, search_repeat
from rnnsweep.search.settings import (
    SETTINGS_ATTR,
    changed,
    describe_changes,
    settings_hash,
    settings_text,
)
from rnnsweep.search.space import fingerprint, matched_suffix
from rnnsweep.search.warm_start import warm_start
from rnnsweep.store_init import ensure_sqlite_store, preflight_sqlite
from rnnsweep.store_schemas import OPTUNA
from rnnsweep.targets import build, class_name

SPACE_ATTR = "search_space"


def study_name(condition: dict[str, str], cell: str) -> str:
    """Deterministic: task, size, cell, then everything else that changes the data."""
    head = [condition["task"], condition["size"], cell]
    rest = [f"{k}{v}" for k, v in condition.items() if k not in ("task", "size")]
    return "-".join(head + rest)


def retry_callback(max_retry: int) -> RetryHeartbeatStaleTrialCallback | None:
    """Re-queue a dead or interrupted trial with the same parameters, up to max_retry times."""
    if not max_retry:
        return None
    with warnings.catch_warnings():  # stable since Optuna 2.8, still flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def make_storage(search: DictConfig) -> RDBStorage:
    """The `search` node's RDB storage (SQLite by default, PostgreSQL for many machines)
    with heartbeats, so a trial left RUNNING by a dead process is failed and re-queued by
    the next worker."""
    url = search.storage
    kwargs: dict = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        # Wait for the write lock instead of failing with "database is locked".
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    else:
        # A server restarted between two queries (PostgreSQL ends every session) leaves dead
        # connections in the pool: test each before use, as MLflow does (Optuna: MySQL only).
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    retry = search.retry_failed_trials
    try:
        # Workers starting together on a fresh database would race on creating its tables;
        # a SQLite one is built whole in a temporary file first (rnnsweep.store_init).
        with store_lock(url, "optuna-schema"):
            ensure_sqlite_store(url, "search.storage", OPTUNA)
            return RDBStorage(
                url,
                heartbeat_interval=search.heartbeat_interval,
                grace_period=search.heartbeat_grace_period,
                heartbeat_stale_trial_callback=retry_callback(retry),
                **kwargs,
            )
    except ConfigError:  # a half-built store that holds data: named by ensure_sqlite_store
        raise
    except Exception as err:  # connection refused, bad URL, missing driver
        reason = str(err).splitlines()[0]
        raise ConfigError(f"search.storage={redact(url)}: cannot open storage: {reason}") from None


def storage_error(search: DictConfig, err: BaseException) -> StoreError | None:
    """err as a StoreError when the study storage (or the disk) failed, else None: how an
    error raised by Optuna outside the Tracker is told from a trial's own failure."""
    cause = infrastructure_cause(err)
    where = "disk" if isinstance(cause, OSError) else f"study storage {redact(search.storage)}"
    return store_error(err, where)


def make_sampler(search: DictConfig) -> optuna.samplers.BaseSampler:
    """search.sampler (conf/search/sampler/*.yaml or any `_target_`), built by Hydra; a
    repeat r > 0 (search.repeat) draws from its own seed, derived from the sampler's and r."""
    node = search.sampler
    repeat = search_repeat(search)
    # A sampler without a seed (a user's class) is not seeded for repeat 0 either.
    seeded = bool(repeat) and node.get("seed") is not None
    extra = {"seed": sampler_seed(int(node.seed), repeat)} if seeded else {}
    with warnings.catch_warnings():  # GPSampler, QMCSampler: stable, still flagged
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return build(node, **extra)


def sampler_label(search: DictConfig) -> str:
    """The sampler's short name (TPESampler: tpe), as parent runs tag it (search_sampler)."""
    return class_name(search.sampler).removesuffix("Sampler").lower()


def make_pruner(search: DictConfig) -> optuna.pruners.BasePruner:
    """search.pruner, built by Hydra; pruners see values reported against the optimiser
    step, so their resources (warm-up, min_resource) count steps. It waits until
    search.min_sampler_trials model-proposed trials are complete (search/fair_pruner.py)."""
    s = search
    return guarantee_sampler_trials(build(s.pruner), int(s.n_trials), int(s.n_startup_trials),
                                    int(s.min_sampler_trials))


@dataclass(frozen=True)
class StudySettings:
    """What names, opens and checks a job's study, assembled once (rnnsweep.job): the
    `search` node, the cell's name and the job's fixed settings (rnnsweep.search.settings)."""

    search: DictConfig
    cell: str
    fixed: dict[str, Any]


def open_study(spec: StudySettings, name: str, storage: RDBStorage) -> optuna.Study:
    search = spec.search
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(search),
        pruner=make_pruner(search),
        direction=search.direction,
        load_if_exists=True,
    )
    check_compatible(spec, study)
    if SPACE_ATTR not in study.user_attrs:
        study.set_user_attr(SPACE_ATTR, fingerprint(search.space))
    if SETTINGS_ATTR not in study.user_attrs:
        study.set_user_attr(SETTINGS_ATTR, settings_text(spec.fixed))
    # search.warm_start_from: a new study's first trials are another study's best (once).
    warm_start(search, study, storage)
    return study


def settings_suffix(spec: StudySettings, base: str,
                    storage: optuna.storages.BaseStorage) -> str:
    """"" for the study named `base`, or, with search.on_changed_settings=new_study when that
    study holds other fixed settings, "-s<hash of these settings>": a study of its own,
    found again by the next run with the same settings."""
    if spec.search.on_changed_settings != "new_study":
        return ""
    try:
        study = optuna.load_study(study_name=base, storage=storage)
    except KeyError:
        return ""
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None or not changed(stored, spec.fixed):
        return ""
    return f"-s{settings_hash(spec.fixed)}"


def full_study_name(spec: StudySettings, condition: dict[str, str],
                    storage: optuna.storages.BaseStorage | None) -> str:
    """The study a job runs: task, size, cell and data; -r<k> for an independent repeat
    k > 0 of the search (search.repeat; repeat 0 keeps the plain name); a settings suffix in
    new_study mode; -matched for parameter-matched studies (last, as the report reads it)."""
    base = study_name(condition, spec.cell) + repeat_suffix(search_repeat(spec.search))
    matched = matched_suffix(spec.search)
    suffix = settings_suffix(spec, base + matched, storage) if storage is not None else ""
    return base + suffix + matched


def check_compatible(spec: StudySettings, study: optuna.Study) -> None:
    """An existing study must keep its direction and search space, or its trials mislead."""
    name, search = study.study_name, spec.search
    if study.direction.name.lower() != search.direction:
        raise ConfigError(
            f"search.direction={search.direction}: study {name!r} in this storage was "
            f"created to {study.direction.name.lower()}; use another search.storage"
        )
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is not None and stored != fingerprint(search.space):
        raise ConfigError(
            f"search.space: study {name!r} in this storage was created with a different search "
            "space; restore the original space or use another search.storage"
        )
    settings = study.user_attrs.get(SETTINGS_ATTR)
    changes = changed(settings, spec.fixed) if settings is not None else []
    if changes:
        keys = ", ".join(k for k, _, _ in changes)
        raise ConfigError(
            f"{keys}: study {name!r} in this storage was run with other fixed settings "
            f"({describe_changes(changes)}); rerun with its settings, set "
            "search.on_changed_settings=new_study to start a study of its own beside it, or "
            "use another search.storage"
        )


def preflight_storage(spec: StudySettings, condition: dict[str, str] | None) -> None:
    """Before any job runs: the storage answers and the job's study (named from its data
    `condition`; None: not known before the data load), if it exists, fits spec.

    Creates nothing: a missing SQLite file or an empty database simply has no study yet, and
    a SQLite store that an interrupted creation left half-built with no data is rebuilt by
    the first job (one holding data is refused: rnnsweep.store_init.preflight_sqlite).
    """
    url = spec.search.storage
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        return
    # A file that is no database, or locked, is named by the connection below.
    if url.startswith("sqlite:///") and not preflight_sqlite(url, "search.storage", OPTUNA,
                                                             report_unreadable=False):
        return
    try:
        # A firewalled host should fail within seconds, not after the OS's TCP timeout.
        connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
        engine = sqlalchemy.create_engine(
            url, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args
        )
        with engine.connect() as con:
            has_tables = sqlalchemy.inspect(con).has_table("studies")
        engine.dispose()
    except Exception as err:  # connection refused, bad URL, missing driver, auth
        reason = redact(str(err).strip().splitlines()[0])
        raise ConfigError(f"search.storage={redact(url)}: cannot connect: {reason}") from None
    if not has_tables or not condition:
        return
    storage = RDBStorage(url, skip_table_creation=True)
    try:
        name = full_study_name(spec, condition, storage)
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return
    finally:
        storage.remove_session()
    check_compatible(spec, study)


@functools.lru_cache(maxsize=4)
def _engine(url: str) -> sqlalchemy.engine.Engine:
    if url.startswith("sqlite"):
        return sqlalchemy.create_engine(url, connect_args={"timeout": 120})
    return sqlalchemy.create_engine(url, pool_pre_ping=True)  # as make_storage's, for restarts


def fail_silent_trials(study: optuna.Study, search: DictConfig) -> list[int]:
    """Fail RUNNING trials that never recorded a heartbeat, once the grace period is over.

    Optuna only fails trials whose last heartbeat is old; a worker killed between creating
    a trial and its first heartbeat (milliseconds apart) would leave the trial RUNNING for
    ever and the study one trial short. Returns the numbers of the trials failed here.
    """
    s = search
    grace = s.heartbeat_grace_period or 2 * s.heartbeat_interval
    cutoff = datetime.now() - timedelta(seconds=grace)  # Optuna stamps starts with now()
    sql = sqlalchemy.text(
        "SELECT t.trial_id, t.number FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
        "WHERE s.study_name = :name AND t.state = 'RUNNING' AND h.trial_id IS NULL "
        "AND t.datetime_start < :cutoff"
    )
    with _engine(s.storage).connect() as con:
        silent = con.execute(sql, {"name": study.study_name, "cutoff": cutoff}).fetchall()
    failed = []
    storage = optuna.storages.get_storage(s.storage) if silent else None
    for trial_id, number in silent:
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker got there first
            continue
        failed.append(number)
        retry = retry_callback(s.retry_failed_trials)
        if retry is not None:
            retry(study, storage.get_trial(trial_id))
    return failed
