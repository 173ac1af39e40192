"""Sequential re-evaluation seeds: rounds added while LSTM vs GRU is undecided."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient
from store_checks import mlflow_url

from rnnsweep.report.sequential import decide, seed_plan


def test_seed_plan_looks_and_no_rounds_when_max_equals_first():
    plan = seed_plan({"reeval_seeds": 3, "reeval_max_seeds": 9, "reeval_seed_step": 2}, 0.05)
    assert plan is not None and plan.looks == (3, 5, 7, 9)
    assert plan.alpha_per_look == pytest.approx(0.0125)
    assert seed_plan({"reeval_seeds": 3, "reeval_max_seeds": 3, "reeval_seed_step": 2},
                     0.05) is None
    assert seed_plan({"reeval_seeds": 2, "reeval_max_seeds": 5, "reeval_seed_step": 2},
                     0.05).looks == (2, 4, 5)


@pytest.mark.slow
def test_undecided_pairs_get_another_round_of_seeds(project):
    proc = run_train(project, "-m", "cell=lstm,gru", "data.size=small", "experiment=smoke",
                     "search.n_trials=1", "search.reeval_max_seeds=4",
                     "search.reeval_seed_step=2", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=mlflow_url(project))
    exp = client.get_experiment_by_name("adding")
    parents = {p.data.tags["cell"]: p for p in client.search_runs(
        [exp.experiment_id], "tags.role = 'study'")}
    seeds = {}
    for cell, p in parents.items():
        runs = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = "
                                  f"'{p.info.run_id}' and tags.role = 'reeval'")
        assert all(r.info.status == "FINISHED" for r in runs)
        by_seed = sorted(runs, key=lambda r: int(r.data.tags["reeval_seed"]))
        seeds[cell] = [r.data.metrics["test_loss"] for r in by_seed]
    plan = seed_plan({"reeval_seeds": 2, "reeval_max_seeds": 4, "reeval_seed_step": 2}, 0.05)
    # the report's default band: GRU/LSTM loss ratio within 1/1.25 .. 1.25, on logs
    first = decide(seeds["gru"][:2], seeds["lstm"][:2], plan, scale="log",
                   margin=float(np.log(1.25)))
    expected = 2 if first.stop else 4
    assert len(seeds["lstm"]) == len(seeds["gru"]) == expected
    if expected == 4:
        assert "undecided cell comparisons: 2 studies get 4" in proc.stderr + proc.stdout
