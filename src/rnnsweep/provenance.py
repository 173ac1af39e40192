"""What an MLflow user looks for on a run: the code it ran (git commit), the data it saw
(one dataset input per split) and, on a study's parent run, the best model as an MLflow Model
and, for a data file, the rows of each split (SPLIT_ARTIFACT).

Everything here is read once per job and attached to each run by `Tracker.start_run`; the
datasets carry a digest and a profile of the tensors, never a copy of the data.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.data import from_numpy
from mlflow.data.dataset_source import DatasetSource
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import (
    MLFLOW_DATASET_CONTEXT,
    MLFLOW_GIT_COMMIT,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
)

# The experiment's kind for MLflow 3: model training, not a GenAI app. (The 3.17 UI still
# picks its landing page from its own GenAI / Model training switch: `make ui` prints links
# that ask for the model-training view, scripts/ui_links.py.)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
GIT_DIRTY_TAG = "git_dirty"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
SPLITS = ("train", "val", "test")
PACKAGE_DIR = Path(__file__).resolve().parent


# Untracked files that are code or config the commit lacks (relative to the checkout's root):
# they make a run dirty. Other untracked files (a data file beside train.py, outputs/) do not.
SOURCE_PATHS = ("src/", "conf/", "train.py")
SPLIT_ARTIFACT = "split/indices.npz"


def source_changed(porcelain_z: str) -> bool:
    """Whether `git status --porcelain -z` lists a change to the source: any tracked file
    changed, added, deleted or renamed, or an untracked file under SOURCE_PATHS. (Paths in
    porcelain output are relative to the checkout's root; git-ignored files are not listed.)"""
    for entry in porcelain_z.split("\0"):
        if not entry:
            continue
        if not entry.startswith("??"):
            return True  # a tracked file (a rename's second entry never gets here)
        path = entry[3:]
        if path == SOURCE_PATHS[2] or path.startswith(SOURCE_PATHS[:2]):
            return True
    return False


@functools.lru_cache(maxsize=8)
def git_state(where: str) -> tuple[str, bool] | None:
    """(commit, dirty) of the git checkout holding `where`; None outside one (or without
    git). Dirty: source_changed. Read once per process: every run of a job records the
    same code."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
            timeout=20, check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "-z"], cwd=where, capture_output=True,
            text=True, timeout=60, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit, source_changed(status)) if commit else None


def source_tags(entry_point: str, code_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """MLflow's source tags: the entry script, LOCAL, and the commit of the checkout the
    rnnsweep code was imported from, with `git_dirty` true when its source had uncommitted
    changes (source_changed: a data file in the checkout does not count)."""
    tags = {MLFLOW_SOURCE_NAME: entry_point, MLFLOW_SOURCE_TYPE: "LOCAL"}
    state = git_state(str(code_dir))
    if state is not None:
        tags[MLFLOW_GIT_COMMIT], dirty = state[0], state[1]
        tags[GIT_DIRTY_TAG] = "true" if dirty else "false"
    return tags


class TaskDataSource(DatasetSource):
    """Where a task's data comes from: its generator and settings, or the file it read."""

    def __init__(self, task: str, condition: dict[str, str], path: str | None = None) -> None:
        self.task, self.condition, self.path = task, dict(condition), path

    @staticmethod
    def _get_source_type() -> str:
        return "rnnsweep_task"

    def load(self, **kwargs: Any) -> str:
        raise NotImplementedError("rebuilt by the task (rnnsweep.data), not downloaded")

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> TaskDataSource:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.task, "condition": self.condition}
        if self.path:
            out["path"] = self.path
        return out

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> TaskDataSource:
        return cls(source_dict["task"], source_dict.get("condition", {}),
                   source_dict.get("path"))


def tensors_digest(tensors: tuple[Any, ...]) -> str:
    """A content hash of a split's tensors (inputs, targets, lengths), shapes included."""
    h = hashlib.sha256()
    for t in tensors:
        array = np.ascontiguousarray(t.numpy() if hasattr(t, "numpy") else t)
        h.update(json.dumps([str(array.dtype), list(array.shape)]).encode())
        h.update(array.data)
    return h.hexdigest()[:16]


def data_path(datamodule: Any) -> str | None:
    """The file a task read its data from, if any (chorales cache, data=file)."""
    path = getattr(datamodule, "path", None) or getattr(getattr(datamodule, "data", None),
                                                        "path", None)
    return str(path) if path else None


def dataset_name(condition: dict[str, str], split: str) -> str:
    head = [condition["task"], condition["size"]]
    rest = [f"{k}{v}" for k, v in condition.items() if k not in ("task", "size")]
    return "-".join(head + rest + [split])


def split_inputs(datamodule: Any) -> list[DatasetInput]:
    """One MLflow dataset input per split (context train / val / test): name, digest,
    source and size (the profile: rows and shapes)."""
    datamodule.setup()
    condition = datamodule.condition()
    source = TaskDataSource(condition["task"], condition, data_path(datamodule))
    inputs = []
    for split in SPLITS:
        tensors = getattr(datamodule, f"{split}_set").tensors
        x, y = tensors[0], tensors[1]
        dataset = from_numpy(
            x.numpy(), targets=y.numpy(), source=source,
            name=dataset_name(condition, split), digest=tensors_digest(tensors),
        )
        inputs.append(DatasetInput(
            dataset=dataset._to_mlflow_entity(),
            tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value=split)],
        ))
    return inputs


def split_indices(datamodule: Any) -> dict[str, np.ndarray]:
    """A data file's rows per split (FileDataModule.split_indices); {} for a generated task,
    whose data the study name's settings rebuild."""
    rows = getattr(datamodule, "split_indices", None)
    return rows() if callable(rows) else {}


def log_split(tracker: Any, run_id: str, rows: dict[str, np.ndarray]) -> None:
    """`rows` as the run's artifact SPLIT_ARTIFACT (np.load reads it; docs/tasks.md)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(SPLIT_ARTIFACT).name
        np.savez(path, **rows)
        tracker.log_file(run_id, path, str(Path(SPLIT_ARTIFACT).parent))


def model_requirements() -> list[str]:
    """The pinned libraries a logged model needs (no inference: MLflow's would re-import the
    model in a subprocess for every study); rnnsweep itself travels as the model's code."""
    import mlflow
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
            f"numpy=={np.__version__}", "lightning", "omegaconf"]


def log_torch_model(
    tracking_uri: str, run_id: str, net: Any, example: np.ndarray,
    registered_name: str | None = None, tags: dict[str, str] | None = None,
) -> Any:
    """`net` as the MLflow Model `model` of run `run_id` (pickled module, with signature,
    input example and the rnnsweep package as its code), loadable with
    mlflow.pytorch.load_model("runs:/<run_id>/model"); registered as `registered_name`
    when given. Returns MLflow's ModelInfo.

    log_model writes through the fluent API: the run is made active for the call only (so
    the model lands in the run's experiment) with the tracking URI set for the call, and the
    caller reopens the run (leaving the block marks it FINISHED).
    """
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    net = net.eval()
    with torch.no_grad():
        output = net(torch.from_numpy(example)).numpy()
    signature = infer_signature(example, output)
    caution = _DropPickleCaution()
    logging.getLogger("mlflow.pytorch").addFilter(caution)
    try:
        with _tracking_uri_set(tracking_uri), mlflow.start_run(run_id=run_id):
            return mlflow.pytorch.log_model(
                net, name="model", signature=signature, input_example=example,
                serialization_format="pickle", code_paths=[str(PACKAGE_DIR)],
                pip_requirements=model_requirements(), registered_model_name=registered_name,
                tags=tags, await_registration_for=0,
            )
    finally:
        logging.getLogger("mlflow.pytorch").removeFilter(caution)


@contextlib.contextmanager
def _tracking_uri_set(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to `uri` for the block, then put back exactly.

    mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI, which rnnsweep reads first
    (tracking.tracking_uri): left behind, the next job of a `-m` sweep in this process would
    record into that store. So both the global (unset, when it was) and the variable are
    restored.
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_global = getattr(tracking_utils, "_tracking_uri", None)
    saved_env = os.environ.get(TRACKING_URI_ENV)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_global)  # None: unset (and the variable removed)
        if saved_env is None:
            os.environ.pop(TRACKING_URI_ENV, None)
        else:
            os.environ[TRACKING_URI_ENV] = saved_env


class _DropPickleCaution(logging.Filter):
    """MLflow warns that a pickled model runs code when loaded; the model is this project's
    own class, written by this process: one line per study that says nothing to the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Pickle or CloudPickle" not in str(record.msg)
