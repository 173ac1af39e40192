"""A disk that fills while the best model, an artifact or the report is written
(docs/resuming.md): one line naming what could not be written, exit 1, nothing already
recorded lost, no run left RUNNING, and the rerun (with room again) completes it.

The full disk is real: a small tmpfs mounted on the project's artifact store
(mlruns/artifacts) or its report folder (reports/), grown later without losing its content
(`mount -o remount,size=...`). Mounting needs root with CAP_SYS_ADMIN; without it the
artifact-store test skips, and the report test fills the disk with a file size limit
instead (RLIMIT_FSIZE: EFBIG on the report's largest file, report.html).
"""

from __future__ import annotations

import errno
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow.models
import pytest
from conftest import clean_env, make_project_copy, run_train
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from store_checks import (
    all_runs,
    check_no_loss,
    finished_snapshot,
    mlflow_url,
    one_error_line,
    optuna_url,
    trials_by_study,
)

from rnnsweep.search.objective import failed_by_itself

# One study of two trials, no re-evaluation seeds: the artifacts of a study (its config, the
# trials' weights, the best model) at the least training.
ARGS = ["-m", "cell=lstm", "experiment=smoke", "data.size=small", "search.n_trials=2",
        "search.reeval_seeds=0"]
N_TRIALS = 2
FULL = "No space left on device"


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Callable[[str], None] | None]:
    """A tmpfs of `size` on `folder` for the block; yields resize(size), which keeps the
    content, or None where mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        yield None
        return

    def resize(new: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={new}", str(folder)], check=True)

    try:
        yield resize
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


NO_MOUNT = "a full disk needs a small tmpfs, and mounting one needs root with CAP_SYS_ADMIN"


def _running(project: Path) -> list:
    return [(r.info.run_name, r.data.tags.get("role"))
            for r in all_runs(mlflow_url(project)) if r.info.status == "RUNNING"]


def _parent(project: Path):
    (parent,) = [r for r in all_runs(mlflow_url(project)) if r.data.tags.get("role") == "study"]
    return parent


def _counted_failed(project: Path) -> list[int]:
    return [t.number for trials in trials_by_study(optuna_url(project)).values()
            for t in trials if failed_by_itself(t)]


def _models(project: Path, run_id: str) -> list:
    client = MlflowClient(tracking_uri=mlflow_url(project))
    exp = client.get_run(run_id).info.experiment_id
    return client.search_logged_models([exp], filter_string=f"source_run_id = '{run_id}'")


@pytest.mark.parametrize(("raised", "named"), [
    (OSError(errno.ENOSPC, "No space left on device"), "artifact store"),
    (MlflowException("db", error_code=TEMPORARILY_UNAVAILABLE), "tracking store"),
])
def test_a_model_that_cannot_be_logged_names_the_store_that_failed(tmp_path, monkeypatch,
                                                                   raised, named):
    """The model is written through MLflow's fluent API, outside the guarded client: its
    files go to the artifact store, its record to the tracking store."""
    import rnnsweep.tracking as tracking
    from rnnsweep.errors import StoreError

    def raising(err: BaseException):
        def log_torch_model(*args, **kwargs):
            raise err
        return log_torch_model

    cfg = OmegaConf.create({"tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db",
                                         "artifact_root": str(tmp_path / "artifacts")}})
    tracker = tracking.Tracker(cfg.tracking)
    monkeypatch.setattr(tracking, "log_torch_model", raising(raised))
    with pytest.raises(StoreError, match=f"^{named} .* failed: "):
        tracker.log_model("run", None, None, {})
    monkeypatch.setattr(tracking, "log_torch_model", raising(ValueError("bad input")))
    with pytest.raises(ValueError, match="bad input"):  # not a store's failure: as raised
        tracker.log_model("run", None, None, {})


@pytest.fixture(scope="module")
def recovered(tmp_path_factory) -> Iterator[dict]:
    """One study through an artifact store that fills twice, then a rerun with room:
    1. no room at all: the new study run's config.yaml is refused;
    2. room for the config and the trials' weights, not the best model;
    3. room again: the rerun completes the study.
    What each step left, for the tests; the mount stays until the module is done (the
    report reads the study's config from it). Without a mount: a plain sweep, and the
    reason, for the report test."""
    project = make_project_copy(tmp_path_factory.mktemp("disk_full") / "project").resolve()
    artifacts = project / "mlruns" / "artifacts"
    out: dict = {"project": project}
    with tmpfs(artifacts, "4k") as resize:
        if resize is None:
            out["skipped"] = NO_MOUNT
            plain = run_train(project, *ARGS)
            assert plain.returncode == 0, plain.stderr[-3000:]
            yield out
            return
        (artifacts / ".filler").write_bytes(b"\0" * 4096)  # the one page taken: no room
        out["no_room"] = run_train(project, *ARGS)
        out["no_room_running"] = _running(project)
        out["no_room_parent"] = _parent(project)
        out["no_room_counted"] = _counted_failed(project)

        resize("404k")  # 400 KiB free: a study's config and weights, not a model (~850 KiB)
        out["no_model"] = run_train(project, *ARGS)
        out["no_model_running"] = _running(project)
        out["before"] = finished_snapshot(optuna_url(project))
        out["no_model_counted"] = _counted_failed(project)
        out["no_model_models"] = _models(project, _parent(project).info.run_id)

        (artifacts / ".filler").unlink()
        resize("64m")
        out["rerun"] = run_train(project, *ARGS)
        yield out


@pytest.mark.slow
def test_a_full_artifact_store_stops_the_study_in_one_line_and_the_rerun_completes_it(
        recovered, monkeypatch):
    if "skipped" in recovered:
        pytest.skip(recovered["skipped"])
    project = recovered["project"]
    store = f"artifact store {project}/mlruns/artifacts failed: "

    # 1. The study's config: refused, one line, the new study run ended (not RUNNING).
    no_room = recovered["no_room"]
    assert no_room.returncode == 1, no_room.stderr[-3000:]
    line = one_error_line(no_room.stderr)
    assert store in line and FULL in line, line
    assert "rerun the same command to resume" in line
    assert recovered["no_room_running"] == [] and recovered["no_room_counted"] == []
    assert recovered["no_room_parent"].info.status == "FAILED"

    # 2. The best model: refused after both trials finished; no trial lost or counted as
    # failed, the half-written model marked FAILED, nothing RUNNING.
    no_model = recovered["no_model"]
    assert no_model.returncode == 1, no_model.stderr[-3000:]
    line = one_error_line(no_model.stderr)
    assert store in line and FULL in line, line
    assert [len(t) for t in recovered["before"].values()] == [N_TRIALS]
    assert recovered["no_model_running"] == [] and recovered["no_model_counted"] == []
    assert [m.status for m in recovered["no_model_models"]] == [LoggedModelStatus.FAILED]

    # 3. The rerun: every finished trial kept as it was, the study complete, its config and
    # its best model (READY, the one runs:/<study run>/model loads) in the artifact store.
    rerun = recovered["rerun"]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    check_no_loss(optuna_url(project), mlflow_url(project), N_TRIALS, 1)
    assert finished_snapshot(optuna_url(project)) == recovered["before"]
    parent = _parent(project)
    client = MlflowClient(tracking_uri=mlflow_url(project))
    assert "config.yaml" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    ready = [m.model_id for m in _models(project, parent.info.run_id)
             if m.status == LoggedModelStatus.READY]
    assert ready == [parent.data.tags["best_model_id"]]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url(project))
    info = mlflow.models.get_model_info(f"runs:/{parent.info.run_id}/model")
    assert info.model_id == parent.data.tags["best_model_id"]


def _report(project: Path, limit: int | None = None) -> subprocess.CompletedProcess:
    """`python -m rnnsweep.report` as `make report` runs it, in the project; with `limit`,
    no file it writes may grow past that many bytes."""
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    return subprocess.run(
        [sys.executable, "-m", "rnnsweep.report"], cwd=project, env=clean_env(),
        capture_output=True, text=True, timeout=300,
        preexec_fn=None if limit is None else
        (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))))


@pytest.mark.slow
def test_a_full_report_folder_fails_in_one_line_and_the_rerun_writes_the_whole_report(
        recovered):
    project = recovered["project"]
    reports = project / "reports"  # report.out_dir
    # 256 KiB: the figures, tables and report.md fit (~180 KiB here), report.html, written
    # last, does not: the worst case, a report.md that would look complete.
    with tmpfs(reports, "256k") as resize:
        failed = _report(project, limit=None if resize else 128 * 1024)
        assert failed.returncode == 1, failed.stderr[-3000:]  # not 2: the input was fine
        line = one_error_line(failed.stderr)
        assert line.startswith(f"error: could not write {reports}/adding/"), line
        assert ("No space left on device" if resize else "File too large") in line, line
        assert "rerun the same command" in line
        # Nothing half-written left: no report folder, no partial one taking the space.
        assert list(reports.iterdir()) == []
        assert _running(project) == []

        if resize:
            resize("64m")
        rerun = _report(project)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        folder = reports / "adding"
        assert sorted(p.name for p in reports.iterdir()) == ["adding"]
        assert (folder / "report.md").read_text().startswith("# Comparison report: adding")
        assert (folder / "report.html").read_text().rstrip().endswith("</html>")
        assert {"summary.csv", "trials.csv"} <= {p.name for p in (folder / "tables").iterdir()}
        assert (folder / "metrics.json").stat().st_size > 0
        report_runs = [r for r in all_runs(mlflow_url(project))
                       if r.data.tags.get("role") == "report"]
        assert [r.info.status for r in report_runs] == ["FINISHED"]
        assert _running(project) == []
