"""Sequential re-evaluation seeds: rounds added while LSTM vs GRU is undecided."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import NOISE, run_train
from mlflow.tracking import MlflowClient
from store_checks import mlflow_url

from rnnsweep import seed_rounds
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
                     "search.reeval_seed_step=2", timeout=600, workers=True)
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
    # as the rounds decide: the report's default band (GRU/LSTM loss ratio within 1/1.25 ..
    # 1.25, on logs), seeds paired (both lists are in seed order), at the strictest Holm step
    first = decide(seeds["gru"][:2], seeds["lstm"][:2], plan, scale="log",
                   margin=float(np.log(1.25)), paired=True,
                   level_divisor=seed_rounds.CLAIMS_PER_PAIR)
    expected = 2 if first.stop else 4
    assert len(seeds["lstm"]) == len(seeds["gru"]) == expected
    if expected == 4:
        assert "undecided cell comparisons: 2 studies get 4" in proc.stderr + proc.stdout
        # The rounds' trainings (in this process or fresh workers) are as quiet as the trials'.
        for text in NOISE:
            assert text not in proc.stderr + proc.stdout, text


class _FakeClient:
    """Two studies, each with `done` finished re-evaluation runs of `seconds` each."""

    def __init__(self, done: int, seconds: float) -> None:
        from types import SimpleNamespace as NS

        self.parents = [NS(info=NS(run_id=f"p{i}", experiment_id="1"),
                           data=NS(tags={"best_trial_number": "0", "cell": cell}, metrics={}))
                        for i, cell in enumerate(("lstm", "gru"))]
        self.runs = [NS(info=NS(start_time=0, end_time=int(seconds * 1000)), data=NS(metrics={}))
                     for _ in range(done)]

    def search_experiments(self):
        from types import SimpleNamespace as NS

        return [NS(experiment_id="1")]

    def search_runs(self, ids, filter_string, max_results=1000):
        return self.parents if "'study'" in filter_string else self.runs


def _rounds_config(minutes):
    from omegaconf import OmegaConf

    return OmegaConf.create({
        "search": {"name": "tpe", "study": True, "reeval_seeds": 3, "reeval_max_seeds": 7,
                   "reeval_seed_step": 2, "seed_rounds_minutes": minutes},
        "report": {"alpha": 0.05}, "tracking": {"uri": "sqlite:///unused.db", "sweep_id": "s"}})


@pytest.mark.parametrize("minutes, started_ago, rounds", [
    (None, 0, 2),     # no budget: every look of the plan (5, then 7 seeds)
    (10, 0, 2),       # 10 min left; a round of 2 studies x 2 seeds x 30 s = 120 s fits
    (10, 500, 0),     # 100 s left: the first round (120 s) would end past the budget
    (10, 370, 1),     # 230 s left: one round fits, the next (its 120 s) does not
])
def test_seed_rounds_start_only_while_they_fit_the_time_budget(monkeypatch, minutes,
                                                               started_ago, rounds):
    import time

    import mlflow.tracking

    client = _FakeClient(done=3, seconds=30.0)
    clock = [1_000_000.0]
    added = []

    def add_seeds(client_, parent, config, look):  # a round: its seeds take their time
        added.append((parent.info.run_id, look))
        clock[0] += 2 * 30.0 * (look - len(client.runs)) / 2  # this study's share
        if parent is client.parents[-1]:
            client.runs.extend(client.runs[:look - len(client.runs)])

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", lambda tracking_uri: client)
    monkeypatch.setattr(seed_rounds, "pending_studies",
                        lambda c, parents, plan, config: {p.info.run_id for p in parents})
    monkeypatch.setattr(time, "time", lambda: clock[0])
    started = clock[0] - started_ago
    assert seed_rounds.run_seed_rounds(_rounds_config(minutes), add_seeds, started) == rounds
    assert [look for _, look in added] == [5, 5, 7, 7][:2 * rounds]


def test_a_rounds_estimate_is_the_lacking_seeds_times_each_studys_mean_run():
    from rnnsweep.seed_rounds import round_seconds

    client = _FakeClient(done=3, seconds=30.0)
    assert round_seconds(client, client.parents, 5) == pytest.approx(2 * 2 * 30.0)
    assert round_seconds(client, client.parents, 3) == 0.0
    assert round_seconds(_FakeClient(done=0, seconds=30.0), client.parents, 5) == 0.0


def test_a_failing_seed_round_says_why_and_where_and_keeps_the_sweep(monkeypatch, caplog):
    """The studies are finished when the rounds start: a failure there is one logged line
    naming the error and rnnsweep's innermost frame, never an exception out of the sweep."""
    from omegaconf import OmegaConf

    from rnnsweep.sweep_callbacks import SeedRounds

    def broken(config, add_seeds, sweep_started):  # noqa: ANN001, ARG001
        return OmegaConf.create({"a": 1}, flags={"struct": True}).tracking

    monkeypatch.setattr(seed_rounds, "run_seed_rounds", broken)
    with caplog.at_level("ERROR"):
        SeedRounds().on_multirun_end(OmegaConf.create({"search": {"study": True}}))
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("sequential re-evaluation seeds stopped: Key 'tracking' is not in "
                           "struct"), line
    # the innermost frame of rnnsweep's own (this test's stand-in is not one)
    assert re.search(r"\(sweep_callbacks\.py:\d+\)$", line), line
