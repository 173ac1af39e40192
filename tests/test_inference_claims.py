"""Claims 4-6, Holm and the bookkeeping behind them, on constructed sweeps with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rnnsweep.report.claim_types import CONTRADICTED, INCONCLUSIVE, NOT_MEASURED, SUPPORTED
from rnnsweep.report.claims import apply_holm, build_claims, identical_pairs
from rnnsweep.report.collect import Sweep, condition_label
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.performance_claims import (
    comparable_claim,
    long_range_claim,
    overfits_claim,
)
from rnnsweep.report.settings import Settings

RCFG = {"alpha": 0.05, "test_metric": "test_loss", "equivalence_margin": 0.1,
        "margin_kind": "relative_to_baseline", "length_keys": ["T", "seq_len"]}


def make_sweep(studies: dict, baseline: float | None = 0.17, axis: str | None = None,
               extra_reevals: list[dict] | None = None) -> Sweep:
    """studies: {(cell, size[, length]): {"test_loss": [...], "gap_at_best": [...], ...}};
    one parent per key, its current best is trial 7, one finished re-evaluation per value."""
    parents, reevals = [], []
    for key, metrics in studies.items():
        cell, size = key[0], key[1]
        pid = "-".join(map(str, key))
        row = {"run_id": pid, "tags.cell": cell, "tags.data_size": size,
               "tags.study_name": pid, "tags.best_trial_number": "7", "tags.sweep_id": "s1",
               "start_time": 0}
        if axis:
            row[f"tags.data.{axis}"] = str(key[2])
        if baseline is not None:
            row["metrics.baseline_loss"] = baseline
        parents.append(row)
        n = len(next(iter(metrics.values())))
        for i in range(n):
            r = {"run_id": f"{pid}-r{i}", "tags.mlflow.parentRunId": pid, "tags.cell": cell,
                 "tags.data_size": size, "status": "FINISHED", "tags.state": "COMPLETE",
                 "tags.best_trial_number": "7", "tags.role": "reeval"}
            if axis:
                r[f"tags.data.{axis}"] = str(key[2])
            r.update({f"metrics.{k}": v[i] for k, v in metrics.items()})
            reevals.append(r)
    reevals += extra_reevals or []
    p, r = pd.DataFrame(parents), pd.DataFrame(reevals)
    axes = [f"tags.data.{axis}"] if axis else []
    for df in (p, r):
        df["condition"] = [condition_label(row, axes) for _, row in df.iterrows()]
    return Sweep(experiment="adding", sweep_id="s1", metric="val_loss", direction="minimize",
                 space={}, parents=p, trials=pd.DataFrame(), reevals=r, axes=axes)


S = Settings.from_cfg(RCFG)
L = [0.100, 0.104, 0.096, 0.102, 0.098]


def test_comparable_supported_within_margin_of_the_baseline() -> None:
    # margin = 10 % of 0.17 = 0.017; the difference 0.001 is well inside it
    sweep = make_sweep({("lstm", "small"): {"test_loss": L},
                        ("gru", "small"): {"test_loss": [v + 0.001 for v in L]}})
    claim = comparable_claim(Evidence(sweep), S)
    assert claim.verdict == SUPPORTED
    assert claim.effect == pytest.approx(0.001)
    assert -0.017 < claim.ci_low < claim.ci_high < 0.017
    assert claim.mde is None and claim.n_seeds == 5


def test_comparable_contradicted_only_beyond_the_margin() -> None:
    far = make_sweep({("lstm", "small"): {"test_loss": L},
                      ("gru", "small"): {"test_loss": [v + 0.05 for v in L]}})
    c = comparable_claim(Evidence(far), S)
    assert c.verdict == CONTRADICTED and c.ci_low > 0.017
    # significantly different from zero but not surely beyond the margin: not contradicted
    near = make_sweep({("lstm", "small"): {"test_loss": L},
                       ("gru", "small"): {"test_loss": [v + 0.016 for v in L]}})
    c = comparable_claim(Evidence(near), S)
    assert c.verdict == INCONCLUSIVE and c.ci_low > 0 and c.mde is not None


def test_comparable_needs_a_recorded_baseline_and_learning() -> None:
    no_base = make_sweep({("lstm", "small"): {"test_loss": L},
                          ("gru", "small"): {"test_loss": L}}, baseline=None)
    c = comparable_claim(Evidence(no_base), S)
    assert c.verdict == INCONCLUSIVE and "not recorded" in c.evidence
    absolute = Settings.from_cfg({**RCFG, "margin_kind": "absolute", "equivalence_margin": 0.01})
    assert comparable_claim(Evidence(no_base), absolute).verdict == SUPPORTED
    # both cells at the trivial level (ln 2 on a 2-class task): not "comparable"
    stuck = [0.693, 0.6931, 0.6929, 0.693]
    trivial = make_sweep({("lstm", "small"): {"test_loss": stuck},
                          ("gru", "small"): {"test_loss": stuck}}, baseline=0.6931)
    c = comparable_claim(Evidence(trivial), S)
    assert c.verdict == INCONCLUSIVE and "trivial predictor" in c.evidence


def test_comparable_lists_conditions_left_out() -> None:
    sweep = make_sweep({("lstm", "small"): {"test_loss": L},
                        ("gru", "small"): {"test_loss": [v + 0.001 for v in L]},
                        ("lstm", "large"): {"test_loss": L}})
    c = comparable_claim(Evidence(sweep), S)
    assert "large left out (only lstm measured)" in c.evidence


def test_failed_seeds_are_counted_not_dropped_silently() -> None:
    failed = [{"run_id": "x", "tags.mlflow.parentRunId": "lstm-small", "tags.cell": "lstm",
               "tags.data_size": "small", "status": "FAILED", "tags.state": "FAIL",
               "tags.best_trial_number": "7", "tags.fail_reason": "non-finite loss",
               "tags.role": "reeval"}]
    sweep = make_sweep({("lstm", "small"): {"test_loss": L},
                        ("gru", "small"): {"test_loss": L}}, extra_reevals=failed)
    ev = Evidence(sweep)
    assert ev.seeds("lstm", "small") == (5, 1, ["non-finite loss"])
    assert len(ev.values("lstm", "small", "metrics.test_loss")) == 5
    assert "failed seeds left out: lstm 1 (non-finite loss)" in \
        comparable_claim(ev, S).evidence


def test_reevaluations_of_an_older_best_are_not_pooled() -> None:
    old = [{"run_id": f"o{i}", "tags.mlflow.parentRunId": "gru-small", "tags.cell": "gru",
            "tags.data_size": "small", "status": "FINISHED", "tags.state": "COMPLETE",
            "tags.best_trial_number": "3", "metrics.test_loss": 5.0, "tags.role": "reeval"}
           for i in range(3)]
    sweep = make_sweep({("lstm", "small"): {"test_loss": L},
                        ("gru", "small"): {"test_loss": L}}, extra_reevals=old)
    assert Evidence(sweep).values("gru", "small", "metrics.test_loss") == L


def _gap_sweep(lstm_small: list[float], gru_small: list[float]) -> Sweep:
    base = [0.010, 0.012, 0.008, 0.011]
    return make_sweep({
        ("lstm", "small"): {"gap_at_best": lstm_small, "test_loss": L[:4]},
        ("lstm", "large"): {"gap_at_best": base, "test_loss": L[:4]},
        ("gru", "small"): {"gap_at_best": gru_small, "test_loss": L[:4]},
        ("gru", "large"): {"gap_at_best": base, "test_loss": L[:4]},
    })


def test_overfitting_is_an_interaction() -> None:
    big, small = [0.060, 0.064, 0.058, 0.062], [0.020, 0.022, 0.018, 0.021]
    assert overfits_claim(Evidence(_gap_sweep(big, small)), S).verdict == SUPPORTED
    assert overfits_claim(Evidence(_gap_sweep(small, big)), S).verdict == CONTRADICTED
    # both cells overfit equally on small data: a large gap alone is not the claim
    same = overfits_claim(Evidence(_gap_sweep(big, [v + 0.0005 for v in big])), S)
    assert same.verdict == INCONCLUSIVE and same.mde is not None
    assert same.effect == pytest.approx(-0.0005)


def test_overfitting_not_measured_without_both_sizes() -> None:
    sweep = make_sweep({("lstm", "small"): {"gap_at_best": L}, ("gru", "small"):
                        {"gap_at_best": L}})
    assert overfits_claim(Evidence(sweep), S).verdict == NOT_MEASURED


def _length_sweep(ratios: dict[int, float]) -> Sweep:
    rng = np.random.default_rng(0)
    studies = {}
    for length, ratio in ratios.items():
        lstm = 0.01 * np.exp(rng.normal(0, 0.05, 4))
        studies[("lstm", "small", length)] = {"test_loss": lstm.tolist()}
        studies[("gru", "small", length)] = {"test_loss": (lstm * ratio).tolist()}
    return make_sweep(studies, axis="T")


def test_long_range_needs_a_growing_advantage() -> None:
    growing = long_range_claim(Evidence(_length_sweep({25: 1.0, 50: 2.0, 100: 4.0})), S)
    assert growing.verdict == SUPPORTED
    assert growing.effect == pytest.approx(np.log(2), rel=0.05)  # x2 per doubling
    # the LSTM better by the same factor at every length: no trend, not supported
    level = long_range_claim(Evidence(_length_sweep({25: 3.0, 50: 3.0, 100: 3.0})), S)
    assert level.verdict != SUPPORTED and abs(level.effect) < 0.1
    shrinking = long_range_claim(Evidence(_length_sweep({25: 4.0, 50: 2.0, 100: 1.0})), S)
    assert shrinking.verdict == CONTRADICTED


def test_holm_re_decides_with_a_consistent_interval() -> None:
    sweep = _gap_sweep([0.060, 0.064, 0.058, 0.062], [0.020, 0.022, 0.018, 0.021])
    claim = overfits_claim(Evidence(sweep), S)
    strict = claim.decide(1e-9)  # type: ignore[misc]
    assert strict.verdict == INCONCLUSIVE and strict.ci_low < 0 < strict.ci_high
    out = apply_holm([claim], 0.05)
    assert out[0].verdict == SUPPORTED and "Holm over 1" in out[0].evidence


def test_build_claims_on_a_constructed_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnsweep.report import claims as claims_module
    from rnnsweep.report.claim_types import CLAIM_TEXTS, Claim

    # The cost probe rebuilds the task from MLflow: not part of this test.
    monkeypatch.setattr(claims_module, "cost_claims", lambda sweep, rcfg: [
        Claim(t, NOT_MEASURED, "probe skipped") for t in CLAIM_TEXTS[:3]])
    sweep = _gap_sweep([0.060, 0.064, 0.058, 0.062], [0.020, 0.022, 0.018, 0.021])
    claims = build_claims(sweep, RCFG)
    assert len(claims) == 6
    by = {c.claim: c for c in claims}
    assert by["LSTM overfits more on small data"].verdict == SUPPORTED
    assert by["LSTM and GRU perform comparably"].verdict == SUPPORTED


def test_identical_pairs_count_each_configuration_once() -> None:
    rows = []
    for cond in ("small", "large"):  # the same start-up configurations in both conditions
        for cfg, (a, b) in enumerate(((100.0, 75.0), (200.0, 150.0))):
            for cell, v in (("lstm", a), ("gru", b)):
                rows.append({"condition": cond, "tags.cell": cell, "params.lr": str(cfg),
                             "params.seed": "1", "metrics.n_params": v})
    sweep = Sweep("adding", "s", "val_loss", "minimize", {"lr": {}}, pd.DataFrame(),
                  pd.DataFrame(rows), pd.DataFrame())
    lstm, gru = identical_pairs(sweep, "metrics.n_params")
    assert len(lstm) == 2 and sorted(lstm) == pytest.approx([100.0, 200.0])
    assert sorted(gru) == pytest.approx([75.0, 150.0])
