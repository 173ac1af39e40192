"""MLflow bookkeeping: one experiment per task, a parent run per study, a child per trial.

MlflowClient with explicit run ids (not the fluent API's global active run) keeps parent and
child runs unambiguous when a study resumes or several workers share one study.
"""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from omegaconf import DictConfig, OmegaConf

from rnnsweep.errors import ConfigError
from rnnsweep.locks import file_lock
from rnnsweep.redact import redact

PARENT_ROLE, TRIAL_ROLE, SINGLE_ROLE = "study", "trial", "single"


def tracking_uri(cfg: DictConfig) -> str:
    """MLFLOW_TRACKING_URI wins over the config, as in every MLflow tool."""
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri


def _is_local(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def _sqlite_dir(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent
    return None


def check_reachable(uri: str, key: str = "tracking.uri", timeout: float = 10.0) -> None:
    """A tracking server must answer its health check before any job starts."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as reply:
            if reply.status != 200:
                raise OSError(f"HTTP {reply.status}")
    except (OSError, ValueError) as err:
        reason = redact(str(getattr(err, "reason", err)))
        raise ConfigError(
            f"{key}={redact(uri)}: tracking server not reachable: {reason}"
        ) from None


class Tracker:
    def __init__(self, cfg: DictConfig) -> None:
        self.uri = tracking_uri(cfg)
        folder = _sqlite_dir(self.uri)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self.artifact_root = cfg.tracking.artifact_root
        self._experiment_ids: dict[str, str] = {}
        if folder is None:
            self.client = MlflowClient(tracking_uri=self.uri)
        else:
            # The client builds a fresh SQLite schema check-then-create: one worker at a time.
            db = Path(self.uri[len("sqlite:///") :])
            with file_lock(db.with_name(f".{db.name}.lock")):
                self.client = MlflowClient(tracking_uri=self.uri)

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
                exp_id = self.client.create_experiment(name, artifact_location=location)
            except Exception:  # another worker created it first
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
        self._experiment_ids[name] = exp_id
        return exp_id

    def find_runs(self, experiment: str, filter_string: str) -> list[Any]:
        return self.client.search_runs(
            [self.experiment_id(experiment)], filter_string=filter_string, max_results=50000,
            order_by=["attributes.start_time ASC"],
        )

    def find_parent(self, experiment: str, study_name: str) -> str | None:
        runs = self.find_runs(
            experiment, f"tags.study_name = '{study_name}' and tags.role = '{PARENT_ROLE}'"
        )
        return runs[0].info.run_id if runs else None

    def start_run(
        self, experiment: str, name: str, tags: dict[str, str], parent_id: str | None = None
    ) -> str:
        all_tags = {MLFLOW_RUN_NAME: name, **tags}
        if parent_id is not None:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_id
        run = self.client.create_run(
            self.experiment_id(experiment), tags={k: redact(str(v)) for k, v in all_tags.items()},
            run_name=name,
        )
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

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

    def log_config(self, run_id: str, cfg: DictConfig) -> None:
        text = OmegaConf.to_yaml(cfg, resolve=True)
        self.client.log_text(run_id, redact(text), "config.yaml")

    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def download(self, run_id: str, path: str, dst: Path) -> Path:
        return Path(self.client.download_artifacts(run_id, path, str(dst)))
