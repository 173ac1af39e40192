"""MLflow bookkeeping: one experiment per task, a parent run per study, a child per trial.

MlflowClient with explicit run ids (not the fluent API's global active run) keeps parent and
child runs unambiguous when a study resumes or several workers share one study.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import Any

from mlflow.entities import LoggedModelStatus, Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from omegaconf import DictConfig

from rnnsweep.errors import infrastructure_cause, store_error
from rnnsweep.locks import file_lock
from rnnsweep.provenance import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    log_torch_model,
    source_tags,
    split_indices,
    split_inputs,
)
from rnnsweep.redact import redact
from rnnsweep.store_init import ensure_sqlite_store
from rnnsweep.store_schemas import MLFLOW, drop_cached_mlflow_engine

PARENT_ROLE, TRIAL_ROLE, SINGLE_ROLE = "study", "trial", "single"


def tracking_uri(tracking: DictConfig) -> str:
    """MLFLOW_TRACKING_URI wins over the `tracking` node, as in every MLflow tool."""
    return os.environ.get("MLFLOW_TRACKING_URI") or tracking.uri


def tracking_key() -> str:
    """Where the tracking URI came from, for messages: the variable or the config key."""
    return "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "tracking.uri"


def _is_local(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def filter_value(value: object) -> str:
    """`value` as a string literal in an MLflow search filter (`tags.k = <literal>`).

    MLflow's filter parser never unescapes: a literal is the raw text between its quotes,
    single or double, and sqlparse reads a backslash before the closing single quote as an
    escape. So: single quotes, or double quotes for a value with an apostrophe or a trailing
    backslash. A value with both kinds of quote (or a double quote and a trailing backslash)
    has no literal: ValueError, and the caller filters on the other keys and compares
    this one itself (`Tracker.find_parent`).
    """
    text = str(value)
    if "'" not in text and not text.endswith("\\"):
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise ValueError(f"{text!r} cannot be written as an MLflow filter literal")


def tag_filter(tags: dict[str, object], status: str | None = None
               ) -> tuple[str, dict[str, str]]:
    """An MLflow filter string for runs whose tags equal `tags` (and whose status is
    `status`), every value quoted by filter_value. Returns (filter, leftover): the tags no
    literal can hold, for the caller to compare itself (`find_tagged` does)."""
    clauses, leftover = [], {}
    for key, value in tags.items():
        name = key if key.isidentifier() else f"`{key}`"
        try:
            clauses.append(f"tags.{name} = {filter_value(value)}")
        except ValueError:
            leftover[key] = str(value)
    if status is not None:
        clauses.append(f"attributes.status = {filter_value(status)}")
    return " and ".join(clauses), leftover


def find_tagged(tracker: Tracker, experiment: str, tags: dict[str, object],
                status: str | None = None) -> list[Any]:
    """Runs of `experiment` whose tags equal `tags`, oldest first; safe for any value (a
    data file named it's.npz puts an apostrophe in the study name)."""
    filter_string, leftover = tag_filter(tags, status)
    runs = tracker.find_runs(experiment, filter_string)
    return [r for r in runs if all(r.data.tags.get(k) == v for k, v in leftover.items())]


# Calls that read or write artifacts: their failures name the artifact store.
ARTIFACT_CALLS = frozenset({"log_text", "log_artifact", "log_artifacts", "log_dict",
                            "log_image", "log_figure", "log_table", "download_artifacts",
                            "list_artifacts"})


class _DropReported(logging.Filter):
    """MLflow logs a database error's traceback on stderr before raising it; the StoreError
    it becomes is reported in one line (and the traceback goes to the job's log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SQLAlchemy database error")


logging.getLogger("mlflow.store.db.utils").addFilter(_DropReported())


class GuardedClient:
    """An MlflowClient whose every call turns a store failure into StoreError
    (rnnsweep.errors.infrastructure_cause: unwritable, full, unreachable, database gone);
    a request the store refuses (a name that exists, a bad value) passes unchanged."""

    def __init__(self, client: MlflowClient, uri: str, artifact_root: str) -> None:
        self._client = client
        self._stores = (f"tracking store {redact(uri)}",
                        f"artifact store {redact(str(artifact_root))}")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        store = self._stores[name in ARTIFACT_CALLS]

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return guarded(store, attr, *args, **kwargs)
        return call


def guarded(store: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    """func(*args, **kwargs), a failure of `store` raised as StoreError."""
    try:
        return func(*args, **kwargs)
    except Exception as err:
        halt = store_error(err, store, store_call=True)
        if halt is None:
            raise
        raise halt from err


class Tracker:
    # Set once per job by describe_job; every run start_run creates carries them.
    job_tags: dict[str, str] = {}
    job_inputs: list[Any] = []
    job_split: dict[str, Any] = {}  # a data file's row indices per split (log_split)

    def __init__(self, tracking: DictConfig) -> None:
        """The stores of the `tracking` node (uri, artifact_root, register_best)."""
        self.uri = tracking_uri(tracking)
        self.artifact_root = tracking.artifact_root
        self.register_best = bool(tracking.get("register_best"))
        self._experiment_ids: dict[str, str] = {}
        store = f"tracking store {redact(self.uri)}"
        if not self.uri.startswith("sqlite:///"):
            client = guarded(store, MlflowClient, tracking_uri=self.uri)
        else:
            # The client builds a fresh SQLite schema check-then-create, one statement at a
            # time: one worker at a time, and the schema built whole first (store_init). The
            # lock file beside the database makes its folder.
            db = Path(self.uri[len("sqlite:///") :])
            with file_lock(db.with_name(f".{db.name}.lock")):
                guarded(store, ensure_sqlite_store, self.uri, tracking_key(), MLFLOW,
                        functools.partial(drop_cached_mlflow_engine, self.uri))
                client = guarded(store, MlflowClient, tracking_uri=self.uri)
        # A tracking server keeps the artifacts (its --artifacts-destination, or the
        # experiment's location): the local artifact_root is not where they go.
        artifacts = (self.artifact_root if _is_local(self.uri)
                     else f"of the tracking server {redact(self.uri)}")
        self.client = GuardedClient(client, self.uri, artifacts)

    # -- experiments and runs ------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        if name in self._experiment_ids:
            return self._experiment_ids[name]
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            location = None
            if _is_local(self.uri):
                # Artifacts beside the database under the project's mlruns/, not the cwd.
                location = (Path(self.artifact_root) / name).resolve().as_uri()
            try:
                exp_id = self.client.create_experiment(
                    name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
                )
            except Exception:  # another worker created it first
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
            if EXPERIMENT_KIND_TAG not in exp.tags:  # made by an older version: runs table
                self.client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        self._experiment_ids[name] = exp_id
        return exp_id

    def find_runs(self, experiment: str, filter_string: str) -> list[Any]:
        return self.client.search_runs(
            [self.experiment_id(experiment)], filter_string=filter_string, max_results=50000,
            order_by=["attributes.start_time ASC"],
        )

    def find_parent(self, experiment: str, study_name: str) -> str | None:
        runs = find_tagged(self, experiment, {"study_name": study_name, "role": PARENT_ROLE})
        return runs[0].info.run_id if runs else None

    def start_run(
        self, experiment: str, name: str, tags: dict[str, str], parent_id: str | None = None
    ) -> str:
        all_tags = {MLFLOW_RUN_NAME: name, **self.job_tags, **tags}
        if parent_id is not None:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_id
        run = self.client.create_run(
            self.experiment_id(experiment), tags={k: redact(str(v)) for k, v in all_tags.items()},
            run_name=name,
        )
        if self.job_inputs:
            self.client.log_inputs(run.info.run_id, datasets=self.job_inputs)
        return run.info.run_id

    def describe_job(self, datamodule: Any, entry_point: str) -> None:
        """Source tags (git commit, dirty flag, entry script) and the job's datasets, one
        per split, for every run this tracker starts from now on; a data file's split rows
        for its study runs (rnnsweep.provenance.log_split)."""
        self.job_tags = source_tags(entry_point)
        self.job_inputs = split_inputs(datamodule)
        self.job_split = split_indices(datamodule)

    def log_model(self, run_id: str, net: Any, example: Any, tags: dict[str, str],
                  register_as: str | None = None) -> str:
        """`net` as the MLflow Model `model` of `run_id` (rnnsweep.provenance.log_torch_model),
        tagged with `tags`; with `register_as`, also a version of that registered model,
        the same tags on both. The run stays RUNNING. Returns the logged model's id."""
        try:
            info = log_torch_model(self.uri, run_id, net, example, register_as, tags)
        except Exception as err:
            # MLflow's fluent API, not GuardedClient: a failure names the store that failed,
            # the artifact store for the model's files (a full disk), else the tracking store.
            cause = infrastructure_cause(err, store_call=True)
            store = self.client._stores[isinstance(cause, OSError)]
            halt = store_error(err, store, store_call=True)
            if halt is None:
                raise
            raise halt from err
        self.reopen(run_id)
        if register_as is not None and info.registered_model_version is not None:
            for key, value in tags.items():
                self.client.set_registered_model_tag(register_as, key, value)
                self.client.set_model_version_tag(
                    register_as, str(info.registered_model_version), key, value)
        return info.model_id

    def logged_models(self, run_id: str) -> list[Any]:
        """The MLflow Models logged on a run, oldest first; only whole ones (READY): a log
        that failed (a full artifact store) leaves a FAILED one, which a rerun logs again."""
        run = self.client.get_run(run_id)
        models = self.client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'",
            order_by=[{"field_name": "creation_timestamp", "ascending": True}],
        )
        return [m for m in models if m.status == LoggedModelStatus.READY]

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))

    def end_run(self, run_id: str, status: str = "FINISHED",
                metrics: dict[str, float] | None = None, tags: dict[str, Any] | None = None,
                end_time: int | None = None) -> None:
        """End the run with `status` (at `end_time`, ms since the epoch; default now); its
        closing metrics and tags, if any, go first in one batch (two round trips in all)."""
        if metrics or tags:
            self.log(run_id, metrics=metrics, tags=tags)
        self.client.set_terminated(run_id, status=status, end_time=end_time)

    # -- logging ---------------------------------------------------------------------------
    def log(
        self,
        run_id: str,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        step: int = 0,
    ) -> None:
        """One batched call: a trial's epoch costs a single round trip to the store."""
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, redact(str(v))) for k, v in (params or {}).items()],
            tags=[RunTag(k, redact(str(v))) for k, v in (tags or {}).items()],
        )

    def log_config(self, run_id: str, config_yaml: str) -> None:
        """The job's resolved config as YAML, passwords masked here."""
        self.client.log_text(run_id, redact(config_yaml), "config.yaml")

    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def download(self, run_id: str, path: str, dst: Path) -> Path:
        return Path(self.client.download_artifacts(run_id, path, str(dst)))
