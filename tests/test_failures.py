"""Trials that raise or diverge are recorded as FAIL with their reason; the study goes on,
unless failures exceed search.max_failure_rate, which stops it with one clear line."""

from __future__ import annotations

import optuna
import pytest
from conftest import run_train
from store_checks import all_runs, check_no_loss, mlflow_url, optuna_url, trials_by_study

# Plain SGD at a learning rate of 1e6 without clipping overflows within the first epoch.
DIVERGE = ["optim=sgd", "trainer.gradient_clip_val=null", "search.reeval_seeds=0"]


@pytest.mark.slow
def test_diverging_trial_is_failed_with_reason_and_the_study_completes(project):
    proc = run_train(
        project, "cell=gru", "experiment=smoke", *DIVERGE,
        # Seed 1 of the random sampler picks lr=1e6 for the second trial.
        "search/sampler=random", "search.seed=1", "search.max_failure_rate=0.9",
        "search.space.lr.type=categorical", "search.space.lr.log=false",
        "+search.space.lr.choices=[0.01,1000000.0]",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_no_loss(optuna_url(project), mlflow_url(project), n_trials=3, n_studies=1)
    (trials,) = trials_by_study(optuna_url(project)).values()
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed, "expected at least one diverging trial"
    runs = {r.info.run_id: r for r in all_runs(mlflow_url(project))}
    for t in failed:
        assert t.params["lr"] == 1e6
        assert t.user_attrs["fail_reason"].startswith("NonFiniteLossError: train_loss is")
        run = runs[t.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FAILED" and run.data.tags["state"] == "FAIL"
        assert run.data.tags["fail_reason"] == t.user_attrs["fail_reason"]


@pytest.mark.slow
def test_failure_budget_stops_the_study_with_one_line_naming_the_reason(project):
    proc = run_train(
        project, "cell=gru", "experiment=smoke", *DIVERGE,
        "search.space.lr.low=1e6", "search.space.lr.high=1e7",
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "search.max_failure_rate=0.5" in errors[0]
    assert "most common reason (3x): NonFiniteLossError" in errors[0]
    # The stop is the last word, not a crash (each failed trial's own warning may come first).
    assert proc.stderr.rstrip().splitlines()[-1] == errors[0]
    assert "Error executing job" not in proc.stderr
    runs = all_runs(mlflow_url(project))
    assert [r.info.status for r in runs if r.data.tags["role"] == "study"] == ["FAILED"]
    assert {r.info.status for r in runs if r.data.tags["role"] == "trial"} == {"FAILED"}


def test_failure_budget_ends_an_all_failing_study_even_at_rate_one():
    from rnnsweep.search.runner import FailureBudget

    def always_fails(trial: optuna.Trial) -> float:
        trial.set_user_attr("fail_reason", "boom")
        raise ValueError("boom")

    study = optuna.create_study()
    budget = FailureBudget(max_rate=1.0, min_trials=3, max_failures=5)
    study.optimize(always_fails, n_trials=50, catch=(ValueError,), callbacks=[budget])
    assert len(study.trials) == 5
    assert "at most 5 failures" in budget.message and "(5x): boom" in budget.message
