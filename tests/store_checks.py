"""Read a project's two stores the way a user would, and check the no-loss invariants."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import forked_python
import optuna
from conftest import clean_env
from forked_python import Forked
from mlflow.tracking import MlflowClient

FINISHED = ("COMPLETE", "PRUNED")


def optuna_url(project: Path) -> str:
    return f"sqlite:///{project}/mlruns/optuna.db"


def mlflow_url(project: Path) -> str:
    return f"sqlite:///{project}/mlruns/mlflow.db"


def trials_by_study(storage: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    out = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        out[summary.study_name] = study.get_trials(deepcopy=False)
    return out


def finished_snapshot(storage: str) -> dict[str, dict[int, tuple[Any, ...]]]:
    """Number -> (state, params, value) of every finished trial: must never change later."""
    return {
        name: {
            t.number: (t.state.name, dict(t.params), t.value)
            for t in trials if t.state.name in FINISHED
        }
        for name, trials in trials_by_study(storage).items()
    }


def all_runs(tracking_uri: str) -> list[Any]:
    client = MlflowClient(tracking_uri=tracking_uri)
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exp_ids, max_results=10000)


def check_no_loss(storage: str, tracking_uri: str, n_trials: int, n_studies: int) -> None:
    """Exactly n finished trials per study, one parent each, a finished child per finished
    trial with its metrics, and no run left RUNNING."""
    studies = trials_by_study(storage)
    assert len(studies) == n_studies, sorted(studies)
    runs = all_runs(tracking_uri)
    running = [(r.info.run_name, r.data.tags.get("role")) for r in runs
               if r.info.status == "RUNNING"]
    assert running == [], running
    parents = Counter(r.data.tags["study_name"] for r in runs if r.data.tags.get("role") == "study")
    assert parents == dict.fromkeys(studies, 1), parents
    children = {r.info.run_id: r for r in runs if r.data.tags.get("role") == "trial"}
    for name, trials in studies.items():
        finished = [t for t in trials if t.state.name in FINISHED]
        assert len(finished) == n_trials, (name, [(t.number, t.state.name) for t in trials])
        assert not [t for t in trials if t.state.name == "RUNNING"], name
        for t in finished:
            run = children[t.user_attrs["mlflow_run_id"]]
            assert run.info.status == "FINISHED" and run.data.tags["state"] == t.state.name
            assert run.data.tags["study_name"] == name
            assert "val_loss" in run.data.metrics and "wall_seconds" in run.data.metrics


def start_train(project: Path, *args: str, log: Path, **env: str) -> Forked | subprocess.Popen:
    """train.py in `project`, not waited for, its output in `log`: a one-process run
    forked from the tests' preloaded interpreter (tests/forked_python.py), a run with
    launcher workers in a new one."""
    if forked_python.one_process(args):
        return forked_python.start(project, ["train.py", *args], clean_env(**env), log)
    return subprocess.Popen(
        [sys.executable, "train.py", *args], cwd=project, env=clean_env(**env),
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def one_error_line(stderr: str) -> str:
    """The one `error:` line a failed command prints, last on stderr, with no traceback."""
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    assert stderr.rstrip().splitlines()[-1] == errors[0], stderr[-3000:]
    assert "Traceback" not in stderr and len(stderr.splitlines()) < 10, stderr[-3000:]
    return errors[0]
