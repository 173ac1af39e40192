"""Bookkeeping, diagnostics, bottom line and metrics.json on constructed runs (no MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnnsweep.report import build as build_module
from rnnsweep.report import diagnostics
from rnnsweep.report.bookkeeping import current_reevals, is_diverged, latest_sweep_id, snapshot
from rnnsweep.report.bottom_line import bottom_line
from rnnsweep.report.claim_types import CLAIM_TEXTS, Claim, Verdict
from rnnsweep.report.collect import Sweep
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.settings import Settings
from rnnsweep.report.tables import expected_best_curves, summary

RCFG = {"alpha": 0.05, "test_metric": "test_loss", "equivalence_margin": 0.1,
        "margin_kind": "relative_to_baseline", "length_keys": ["T", "seq_len"], "seed": 0,
        "importance_bootstrap": 3}
SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}


def make_sweep(test: dict[tuple[str, str], list[float]], best_step: float = 100,
               budget: float = 1000, baseline: float = 0.17) -> Sweep:
    """Parents per (cell, size); 12 trials each (one failed with a NaN loss), the best one
    trial 0; one finished re-evaluation per test value."""
    rng = np.random.default_rng(0)
    parents, trials, reevals = [], [], []
    for (cell, size), values in test.items():
        pid = f"{cell}-{size}"
        parents.append({"run_id": pid, "tags.cell": cell, "tags.data_size": size,
                        "condition": size, "tags.study_name": pid, "tags.sweep_id": "s1",
                        "tags.best_trial_number": "0", "tags.best_trial_run_id": f"{pid}-t0",
                        "metrics.best_val_loss": 0.05, "metrics.baseline_loss": baseline,
                        "metrics.n_complete": 10.0, "metrics.n_pruned": 1.0,
                        "metrics.n_failed": 1.0, "tags.search_sampler": "tpe",
                        "start_time": 0})
        for k in range(12):
            state = "FAIL" if k == 11 else "PRUNED" if k == 10 else "COMPLETE"
            trials.append({
                "run_id": f"{pid}-t{k}", "tags.mlflow.parentRunId": pid, "tags.cell": cell,
                "condition": size, "tags.state": state, "tags.trial_number": str(k),
                "tags.fail_reason": "NonFiniteLossError: loss is nan" if k == 11 else None,
                "params.lr": str(10 ** rng.uniform(-4, -2)), "params.seed": str(k),
                "params.budget_steps": str(budget), "metrics.best_step": best_step,
                "metrics.n_params": 100.0 if cell == "lstm" else 75.0,
                "value": np.nan if k == 11 else 0.05 * (1 + 0.05 * k)})
        for i, v in enumerate(values):
            reevals.append({"run_id": f"{pid}-r{i}", "tags.mlflow.parentRunId": pid,
                            "tags.cell": cell, "condition": size, "status": "FINISHED",
                            "tags.state": "COMPLETE", "tags.best_trial_number": "0",
                            "metrics.test_loss": v, "metrics.gap_at_best": 0.01,
                            "metrics.val_rise": 0.002, "metrics.best_val_loss": v})
    return Sweep("adding", "s1", "val_loss", "minimize", SPACE, pd.DataFrame(parents),
                 pd.DataFrame(trials), pd.DataFrame(reevals))


GRU = [0.0003, 0.0004, 0.00048]
LSTM = [0.0090, 0.0108, 0.0200]


def test_latest_sweep_is_the_one_with_the_latest_run() -> None:
    """A parent resumed by sweep s2 keeps its old start time; its new trials are later."""
    runs = pd.DataFrame([
        {"run_id": "p", "tags.sweep_id": "s2", "start_time": 1},   # resumed parent, re-tagged
        {"run_id": "q", "tags.sweep_id": "s3", "start_time": 5},   # another study, sweep s3
        {"run_id": "t", "tags.sweep_id": "s2", "start_time": 9},   # s2's trial, the latest
    ])
    assert latest_sweep_id(runs) == "s2"


def test_snapshot_reports_an_older_sweep_as_it_stood() -> None:
    parents = pd.DataFrame([{"run_id": "p", "tags.sweep_id": "s2", "start_time": 0,
                             "tags.best_trial_number": "3", "metrics.best_val_loss": 0.1,
                             "metrics.n_complete": 4.0}])
    children = pd.DataFrame([
        {"run_id": "t0", "tags.mlflow.parentRunId": "p", "tags.role": "trial",
         "tags.sweep_id": "s1", "start_time": 1, "tags.state": "COMPLETE",
         "tags.trial_number": "0", "metrics.best_val_loss": 0.3},
        {"run_id": "t1", "tags.mlflow.parentRunId": "p", "tags.role": "trial",
         "tags.sweep_id": "s1", "start_time": 2, "tags.state": "COMPLETE",
         "tags.trial_number": "1", "metrics.best_val_loss": 0.2},
        {"run_id": "r1", "tags.mlflow.parentRunId": "p", "tags.role": "reeval",
         "tags.sweep_id": "s1", "start_time": 3, "tags.best_trial_number": "1"},
        {"run_id": "t3", "tags.mlflow.parentRunId": "p", "tags.role": "trial",
         "tags.sweep_id": "s2", "start_time": 7, "tags.state": "COMPLETE",
         "tags.trial_number": "3", "metrics.best_val_loss": 0.1},
    ])
    ps, kids = snapshot(parents, children, "s1")
    assert list(kids["run_id"]) == ["t0", "t1", "r1"]  # the later resume is left out
    assert bool(ps.at[0, "resumed_later"])
    assert ps.at[0, "tags.best_trial_number"] == "1"
    assert ps.at[0, "metrics.best_val_loss"] == 0.2 and ps.at[0, "metrics.n_complete"] == 2
    latest, kids2 = snapshot(parents, children, "s2")
    assert len(kids2) == 4 and latest.at[0, "tags.best_trial_number"] == "3"
    assert snapshot(parents, children, "nope")[0].empty


def test_current_reevals_follow_the_parents_best() -> None:
    parents = pd.DataFrame([{"run_id": "p", "tags.best_trial_number": "5"}])
    reevals = pd.DataFrame([
        {"tags.mlflow.parentRunId": "p", "tags.best_trial_number": "2", "status": "FINISHED"},
        {"tags.mlflow.parentRunId": "p", "tags.best_trial_number": "5", "status": "FINISHED"},
        {"tags.mlflow.parentRunId": "p", "tags.best_trial_number": "5", "status": "FAILED",
         "tags.state": "FAIL"}])
    cur = current_reevals(parents, reevals)
    assert len(cur) == 2 and list(cur["ok"]) == [True, False]


def test_diverged_reasons() -> None:
    assert is_diverged("NonFiniteLossError: loss is nan")
    assert is_diverged("non-finite val_loss")
    assert not is_diverged("RuntimeError: out of memory") and not is_diverged(None)
    assert not is_diverged("information")


def test_convergence_flag_and_trainability() -> None:
    late = make_sweep({("lstm", "small"): LSTM}, best_step=950, budget=1000)
    p = late.parents.iloc[0]
    assert diagnostics.converged(late, p) is False
    early = make_sweep({("lstm", "small"): LSTM}, best_step=500)
    assert diagnostics.converged(early, early.parents.iloc[0]) is True
    # A best in the last 10 % is converged when the curve had flattened there (a learning
    # rate decaying to zero): the last 10 % won under 1 % of the improvement from 1.0 to 0.1.
    best_id = p["tags.best_trial_run_id"]
    late.curves[best_id] = {late.metric: [(100, 1.0), (800, 0.1005), (950, 0.1)]}
    assert diagnostics.converged(late, p) is True
    late.curves[best_id] = {late.metric: [(100, 1.0), (800, 0.2), (950, 0.1)]}
    assert diagnostics.converged(late, p) is False
    assert diagnostics.late_gain([(100, 0.5), (950, 0.9)], 900, minimize=False) == 1.0
    assert diagnostics.late_gain([(100, 0.5), (800, 0.89), (950, 0.9)], 900,
                                 minimize=False) == pytest.approx(0.025)
    no_budget = make_sweep({("lstm", "small"): LSTM})
    no_budget.trials = no_budget.trials.drop(columns="params.budget_steps")
    assert diagnostics.converged(no_budget, no_budget.parents.iloc[0]) is None
    t = diagnostics.trainability(early, early.parents.iloc[0])
    # values 0.05 * (1 + 0.05 k): k = 0, 1, 2 within 10 % of the best; 12 ended trials
    assert t["n_trials"] == 12 and t["near_best"] == pytest.approx(3 / 12)
    assert t["diverged"] == pytest.approx(1 / 12)


def test_expected_best_uses_complete_and_pruned_trials_only() -> None:
    sweep = make_sweep({("lstm", "small"): LSTM})
    sweep.trials.loc[3, "tags.state"] = "RUNNING"
    curves = expected_best_curves(sweep)
    assert curves["n_trials"].max() == 10  # 12 - failed - running
    assert not curves["control"].any() and set(curves["sampler"]) == {"tpe"}


def test_bottom_line_names_a_winner_only_with_an_interval() -> None:
    sweep = make_sweep({("lstm", "small"): LSTM, ("gru", "small"): GRU})
    s = Settings.from_cfg(RCFG)
    answer = bottom_line(Evidence(sweep), s, summary(sweep, "test_loss")).iloc[0]
    assert answer["answer"].startswith("gru (lower test_loss)")
    assert "ratio" in answer["how sure"] and "params" in answer["at what cost"]
    close = make_sweep({("lstm", "small"): [0.1, 0.12, 0.09], ("gru", "small"):
                        [0.11, 0.095, 0.12]})
    answer = bottom_line(Evidence(close), s, summary(close, "test_loss")).iloc[0]
    assert answer["answer"].startswith("undecided") and "seeds" in answer["what would change it"]


def test_bottom_line_says_when_no_answer_is_possible() -> None:
    s = Settings.from_cfg(RCFG)
    stuck = make_sweep({("lstm", "small"): [0.69, 0.693, 0.692],
                        ("gru", "small"): [0.693, 0.691, 0.69]}, baseline=0.6931)
    answer = bottom_line(Evidence(stuck), s, summary(stuck, "test_loss")).iloc[0]
    assert answer["answer"].startswith("no answer") and "trivial" in answer["answer"]
    one_seed = make_sweep({("lstm", "small"): [0.1], ("gru", "small"): [0.2, 0.3]})
    answer = bottom_line(Evidence(one_seed), s, summary(one_seed, "test_loss")).iloc[0]
    assert answer["answer"].startswith("no answer: fewer than two")


@pytest.mark.slow  # trains or runs a study in-process for seconds
def test_build_writes_the_metrics_contract(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnsweep.report import claims as claims_module

    monkeypatch.setattr(claims_module, "cost_claims", lambda sweep, rcfg, *_: [
        Claim(t, Verdict.NOT_MEASURED, "probe skipped") for t in CLAIM_TEXTS[:3]])
    sweep = make_sweep({("lstm", "small"): LSTM, ("gru", "small"): GRU,
                        ("lstm", "large"): LSTM, ("gru", "large"): GRU}, best_step=990)
    paths = build_module.build(sweep, RCFG, tmp_path / "adding")
    metrics = json.loads(paths["metrics"].read_text())
    row = metrics["gru"]["small"]
    assert row["baseline_loss"] == 0.17 and row["gap_eval_mean"] == pytest.approx(0.01)
    assert row["gap_eval_sd"] == 0.0 and row["converged"] is False
    assert row["trainability"]["diverged"] == pytest.approx(1 / 12)
    assert row["test_mean"] == pytest.approx(np.mean(GRU))
    claims = metrics["claims"]
    assert set(claims) == set(CLAIM_TEXTS)
    comparable = claims["LSTM and GRU perform comparably"]
    assert set(comparable) >= {"verdict", "effect", "ci_low", "ci_high", "n_seeds", "mde"}
    assert comparable["n_seeds"] == 3
    md = paths["md"].read_text()
    assert md.index("## Bottom line") < md.index("## 1. Summary")
    assert "selection statistic" in md and "not converged" in md.lower()
    assert "raise trainer.max_steps" in md


def test_parent_run_numbers_for_mlflow() -> None:
    """A study run carries its own row; a claim's numbers (pooled over conditions) go on
    the report run only, so a large-data study never shows the small-data difference."""
    from rnnsweep.report.attach import claim_numbers, parent_numbers

    metrics = {"gru": {"small_T=20": {"baseline_loss": 0.17, "gap_eval_mean": 0.01,
                                      "gap_eval_sd": None, "converged": False,
                                      "trainability": {"near_best": 0.25, "diverged": 0.0}}},
               "claims": {"LSTM overfits more on small data": {
                   "verdict": "inconclusive", "effect": 0.002, "ci_low": -0.01,
                   "ci_high": 0.014, "n_seeds": 3, "mde": 0.02}}}
    values, tags = parent_numbers(metrics, "gru", "small T=20")
    assert values["report.baseline_loss"] == 0.17 and "report.gap_eval_sd" not in values
    assert values["report.converged"] == 0.0
    assert values["report.trainability_near_best"] == 0.25
    assert not any(k.startswith("claim.") for k in values)
    assert tags == {"sweep_claim.lstm_overfits_more_on_small_data": "inconclusive"}
    report_values, report_tags = claim_numbers(metrics)
    assert report_values["claim.lstm_overfits_more_on_small_data.mde"] == 0.02
    assert report_values["claim.lstm_overfits_more_on_small_data.n_seeds"] == 3
    assert report_tags == {"claim.lstm_overfits_more_on_small_data": "inconclusive"}


def test_bottom_line_shows_accuracy_beside_the_majority_rate() -> None:
    sweep = make_sweep({("lstm", "small"): [0.30, 0.32, 0.31], ("gru", "small"):
                        [0.60, 0.62, 0.61]}, baseline=0.69)
    sweep.reevals["metrics.test_acc"] = np.where(sweep.reevals["tags.cell"] == "lstm",
                                                 0.91, 0.51)
    sweep.parents["metrics.baseline_acc"] = 0.5
    s = Settings.from_cfg(RCFG)
    answer = bottom_line(Evidence(sweep), s, summary(sweep, "test_loss")).iloc[0]
    assert answer["answer"].startswith("lstm")
    assert "test accuracy gru 0.51, lstm 0.91 vs majority-class rate 0.5" in answer["how sure"]


def test_the_not_converged_hint_names_the_budget_key_the_study_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnsweep.report import claims as claims_module

    monkeypatch.setattr(claims_module, "cost_claims", lambda sweep, rcfg, *_: [
        Claim(t, Verdict.NOT_MEASURED, "probe skipped") for t in CLAIM_TEXTS[:3]])
    sweep = make_sweep({("lstm", "small"): LSTM, ("gru", "small"): GRU}, best_step=990)
    sweep.trials["params.budget_unit"] = "epochs"
    md = build_module.build(sweep, RCFG, tmp_path / "adding")["md"].read_text()
    assert "raise trainer.max_epochs" in md and "raise trainer.max_steps" not in md
