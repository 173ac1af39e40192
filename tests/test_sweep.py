"""The core promise, as a user runs it: a smoke sweep fills MLflow and the study storage."""

from __future__ import annotations

import shlex
from pathlib import Path

import optuna
import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient

N_TRIALS = 3  # experiment=smoke


def client(project: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{project}/mlruns/mlflow.db")


def runs(project: Path, role: str):
    c = client(project)
    exp = c.get_experiment_by_name("adding")
    return c.search_runs([exp.experiment_id], f"tags.role = '{role}'", max_results=1000)


def test_four_parent_runs_with_condition_tags(smoke_sweep):
    parents = runs(smoke_sweep, "study")
    conditions = sorted((r.data.tags["cell"], r.data.tags["data_size"]) for r in parents)
    assert conditions == [("gru", "large"), ("gru", "small"), ("lstm", "large"), ("lstm", "small")]
    for r in parents:
        assert r.info.status == "FINISHED"
        assert r.data.tags["task"] == "adding"
        assert r.data.tags["study_name"].startswith(f"adding-{r.data.tags['data_size']}-")
        # The best trial as the study storage has it: its values, number, run and params.
        study = optuna.load_study(study_name=r.data.tags["study_name"],
                                  storage=f"sqlite:///{smoke_sweep}/mlruns/optuna.db")
        best = study.best_trial
        assert r.data.metrics["best_val_loss"] == pytest.approx(study.best_value, rel=1e-9)
        assert r.data.tags["best_trial_number"] == str(best.number)
        assert r.data.tags["best_trial_run_id"] == best.user_attrs["mlflow_run_id"]
        assert {k[len("best."):]: v for k, v in r.data.tags.items() if k.startswith("best.")} \
            == {k: str(v) for k, v in best.params.items()}
        assert r.data.metrics["best_test_loss"] == pytest.approx(best.user_attrs["test_loss"])
        assert r.data.metrics["best_n_params"] == best.user_attrs["n_params"]
        states = [t.state.name for t in study.trials]
        assert r.data.metrics["n_complete"] == states.count("COMPLETE")
        assert r.data.metrics["n_pruned"] == states.count("PRUNED")
        assert r.data.metrics["n_failed"] == 0 and "FAIL" not in states
        # The best trial's run holds that value as its own best_val_loss.
        best_run = client(smoke_sweep).get_run(best.user_attrs["mlflow_run_id"])
        assert best_run.data.metrics["best_val_loss"] == pytest.approx(study.best_value)
        assert best_run.data.tags["trial_number"] == str(best.number)
        arts = [a.path for a in client(smoke_sweep).list_artifacts(r.info.run_id)]
        assert "config.yaml" in arts
        # The best model: one MLflow Model on the parent, named by its best_model_id tag.
        models = [m.model_id for m in r.outputs.model_outputs]
        assert models == [r.data.tags["best_model_id"]]


def test_each_study_has_n_trials_child_runs_with_params_and_step_history(smoke_sweep):
    c = client(smoke_sweep)
    children = runs(smoke_sweep, "trial")
    for parent in runs(smoke_sweep, "study"):
        mine = [r for r in children if r.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert len(mine) == N_TRIALS
        for r in mine:
            assert r.info.status == "FINISHED"
            assert r.data.tags["state"] in ("COMPLETE", "PRUNED")
            assert {"num_layers", "hidden_size", "dropout", "lr"} <= set(r.data.params)
            assert r.data.metrics["n_params"] > 0 and r.data.metrics["wall_seconds"] > 0
            # Validations every val_check_steps optimiser steps, logged against the step.
            assert r.data.params["budget_steps"] == "30"
            history = c.get_metric_history(r.info.run_id, "val_loss")
            steps = sorted(m.step for m in history)
            assert steps == list(range(10, 10 * len(steps) + 1, 10)) and len(steps) >= 1
            if r.data.tags["state"] == "COMPLETE":
                assert r.data.metrics["optimizer_steps"] <= 30
                assert r.data.metrics["best_step"] in steps
            assert {"train_loss", "gap"} <= set(r.data.metrics)
            if r.data.tags["state"] == "COMPLETE":
                assert "test_loss" in r.data.metrics and "test_acc" in r.data.metrics


def test_study_storage_holds_the_four_studies(smoke_sweep):
    storage = f"sqlite:///{smoke_sweep}/mlruns/optuna.db"
    summaries = optuna.get_all_study_summaries(storage)
    assert sorted(s.study_name for s in summaries) == sorted(
        r.data.tags["study_name"] for r in runs(smoke_sweep, "study"))
    trial_runs = {r.info.run_id: r for r in runs(smoke_sweep, "trial")}
    for s in summaries:
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        assert [t.state.name in ("COMPLETE", "PRUNED") for t in study.trials] == [True] * N_TRIALS
        for t in study.trials:  # each trial is one child run, in the same state, same values
            run = trial_runs[t.user_attrs["mlflow_run_id"]]
            assert run.data.tags["study_name"] == s.study_name
            assert run.data.tags["trial_number"] == str(t.number)
            assert run.data.tags["state"] == t.state.name
            assert {k: run.data.params[k] for k in t.params} == {
                k: str(v) for k, v in t.params.items()}


def test_reproduce_tag_reruns_one_trial_with_the_same_val_loss(smoke_sweep, tmp_path):
    complete = [r for r in runs(smoke_sweep, "trial") if r.data.tags["state"] == "COMPLETE"]
    trial = complete[0]
    cmd = shlex.split(trial.data.tags["reproduce"])
    assert cmd[:3] == ["python", "train.py", "search=none"]
    from conftest import make_project_copy

    fresh = make_project_copy(tmp_path / "again")
    proc = run_train(fresh, *cmd[2:])
    assert proc.returncode == 0, proc.stderr[-2000:]
    single = runs(fresh, "single")
    assert len(single) == 1
    assert single[0].data.metrics["best_val_loss"] == pytest.approx(
        trial.data.metrics["best_val_loss"], rel=1e-6
    )
