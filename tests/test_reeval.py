"""Re-evaluation seeds, peak memory and backend tags on a real smoke sweep; matched mode."""

from __future__ import annotations

import shutil
import statistics
from collections import Counter
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, run_train
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from rnnsweep.cells import fast_gru
from rnnsweep.job import prepare
from rnnsweep.search.reeval import REEVAL_SEED_OFFSET
from rnnsweep.search.space import matched_suffix

SMOKE_REEVAL_SEEDS = 2


def client_for(project: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{project}/mlruns/mlflow.db")


def runs(client: MlflowClient, filt: str) -> list:
    exp = client.get_experiment_by_name("adding")
    return client.search_runs([exp.experiment_id], filt, max_results=1000)


def test_reeval_runs_per_study(smoke_sweep: Path) -> None:
    client = client_for(smoke_sweep)
    storage = f"sqlite:///{smoke_sweep}/mlruns/optuna.db"
    parents = runs(client, "tags.role = 'study'")
    assert len(parents) == 4
    for p in parents:
        children = runs(client, f"tags.mlflow.parentRunId = '{p.info.run_id}'")
        trials = [r for r in children if r.data.tags["role"] == "trial"]
        reevals = [r for r in children if r.data.tags["role"] == "reeval"]
        trial_seeds = {int(r.data.params["seed"]) for r in trials}
        # One run per seed: exactly the planned seeds, none trained twice.
        seeds = sorted(int(r.data.tags["reeval_seed"]) for r in reevals)
        assert seeds == [REEVAL_SEED_OFFSET + k for k in range(SMOKE_REEVAL_SEEDS)]
        assert not set(seeds) & trial_seeds
        assert sorted(int(r.data.params["seed"]) for r in reevals) == seeds
        # The study's best trial, as Optuna has it: every one of its values, retrained.
        study = optuna.load_study(study_name=p.data.tags["study_name"], storage=storage)
        best = study.best_trial
        assert p.data.tags["best_trial_number"] == str(best.number)
        assert best.params and {f"best.{k}": str(v) for k, v in best.params.items()}.items() \
            <= p.data.tags.items()
        for r in reevals:
            assert r.info.status == "FINISHED" and r.data.tags["state"] == "COMPLETE"
            assert r.data.tags["best_trial_number"] == str(best.number)
            assert r.data.tags["cell"] == p.data.tags["cell"]
            assert r.data.tags["study_name"] == p.data.tags["study_name"]
            assert r.data.metrics["peak_memory_bytes"] > 0
            assert {"test_loss", "best_val_loss", "gap_at_best"} <= set(r.data.metrics)
            assert {k: r.data.params[k] for k in best.params} == {
                k: str(v) for k, v in best.params.items()}
            assert [m.step for m in client.get_metric_history(r.info.run_id, "val_loss")]
        assert p.data.metrics["reeval_n"] == SMOKE_REEVAL_SEEDS
        losses = [r.data.metrics["test_loss"] for r in reevals]
        assert p.data.metrics["reeval_test_loss_mean"] == pytest.approx(statistics.fmean(losses))
        assert p.data.metrics["reeval_test_loss_sd"] == pytest.approx(statistics.stdev(losses))
        assert all(r.data.metrics["peak_memory_bytes"] > 0 for r in trials)
        for r in trials + reevals:
            assert r.data.tags["backend"] == p.data.tags["backend"]
        assert p.data.tags["device"] == "cpu"
        assert p.data.tags["backend"] in {"oneDNN (fused RNN kernel)", "ATen (per-step kernels)",
                                          *fast_gru.KERNEL_NAMES.values()}


@pytest.mark.slow
def test_resume_redoes_only_missing_seeds(smoke_sweep: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(smoke_sweep, project, ignore=shutil.ignore_patterns("outputs", "reports"))
    client = client_for(project)
    parent = runs(client, "tags.role = 'study' and tags.cell = 'gru' "
                          "and tags.data_size = 'small'")[0]
    reevals = runs(client, f"tags.role = 'reeval' and tags.mlflow.parentRunId = "
                           f"'{parent.info.run_id}'")
    lost = reevals[0]
    client.set_terminated(lost.info.run_id, "FAILED")  # as if that seed's process had died

    proc = run_train(project, "-m", "cell=gru", "data.size=small", "experiment=smoke",
                     timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = runs(client, f"tags.role = 'reeval' and tags.mlflow.parentRunId = "
                         f"'{parent.info.run_id}'")
    assert len(after) == len(reevals) + 1
    new = [r for r in after if r.info.run_id not in {x.info.run_id for x in reevals}]
    assert new[0].data.tags["reeval_seed"] == lost.data.tags["reeval_seed"]
    assert new[0].info.status == "FINISHED"
    # Per seed: one finished run (the lost one redone, the others kept), nothing RUNNING.
    finished = Counter(r.data.tags["reeval_seed"] for r in after if r.info.status == "FINISHED")
    assert finished == dict.fromkeys({r.data.tags["reeval_seed"] for r in reevals}, 1)
    assert not [r for r in after if r.info.status == "RUNNING"]


def test_match_params_switches_the_space() -> None:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        plain = prepare(compose("config", overrides=[]))
        matched = prepare(compose("config", overrides=["search.match_params=true"]))
    assert "hidden_size" in plain.search.space and "param_budget" not in plain.search.space
    assert "hidden_size" not in matched.search.space
    budget = matched.search.space.param_budget
    assert budget.path == "model.param_budget" and budget.low == matched.search.budget.low
    assert matched_suffix(matched.search) == "-matched" and matched_suffix(plain.search) == ""


@pytest.mark.slow
def test_matched_trials_hit_the_budget(project: Path) -> None:
    proc = run_train(project, "-m", "cell=gru", "data.size=small", "experiment=smoke",
                     "search.match_params=true", "search.n_trials=2", "search.reeval_seeds=0",
                     timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = client_for(project)
    parent = runs(client, "tags.role = 'study'")[0]
    assert parent.data.tags["study_name"].endswith("-matched")
    for t in runs(client, "tags.role = 'trial'"):
        budget = int(t.data.params["param_budget"])
        assert abs(t.data.metrics["n_params"] - budget) / budget < 0.1
