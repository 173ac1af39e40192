"""Claims 4-6, Holm and the bookkeeping behind them, on constructed sweeps with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rnnsweep.report.claim_types import Verdict
from rnnsweep.report.claims import apply_holm, build_claims
from rnnsweep.report.collect import Sweep, condition_label
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.identical import identical_pairs
from rnnsweep.report.long_range_claim import long_range_claim
from rnnsweep.report.performance_claims import comparable_claim, overfits_claim
from rnnsweep.report.settings import Settings

RCFG = {"alpha": 0.05, "test_metric": "test_loss", "equivalence_margin": 0.1,
        "margin_kind": "relative_to_baseline", "length_keys": ["T", "seq_len"]}


def make_sweep(studies: dict, baseline: float | None = 0.17, axis: str | None = None,
               extra_reevals: list[dict] | None = None, seeded: bool = False) -> Sweep:
    """studies: {(cell, size[, length]): {"test_loss": [...], "gap_at_best": [...], ...}};
    one parent per key, its current best is trial 7, one finished re-evaluation per value
    (seeded: the i-th value of every study is re-evaluation seed 1000000 + i, as a sweep tags
    them, so the cells' values pair by seed)."""
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
            if seeded:
                r["tags.reeval_seed"] = str(1_000_000 + i)
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
    assert claim.verdict == Verdict.SUPPORTED
    assert claim.effect == pytest.approx(0.001)
    assert -0.017 < claim.ci_low < claim.ci_high < 0.017
    assert claim.mde is None and claim.n_seeds == 5


def test_comparable_contradicted_only_beyond_the_margin() -> None:
    far = make_sweep({("lstm", "small"): {"test_loss": L},
                      ("gru", "small"): {"test_loss": [v + 0.05 for v in L]}})
    c = comparable_claim(Evidence(far), S)
    assert c.verdict == Verdict.CONTRADICTED and c.ci_low > 0.017
    # significantly different from zero but not surely beyond the margin: not contradicted
    near = make_sweep({("lstm", "small"): {"test_loss": L},
                       ("gru", "small"): {"test_loss": [v + 0.016 for v in L]}})
    c = comparable_claim(Evidence(near), S)
    assert c.verdict == Verdict.INCONCLUSIVE and c.ci_low > 0 and c.mde is not None


def test_comparable_needs_a_recorded_baseline_and_learning() -> None:
    no_base = make_sweep({("lstm", "small"): {"test_loss": L},
                          ("gru", "small"): {"test_loss": L}}, baseline=None)
    c = comparable_claim(Evidence(no_base), S)
    assert c.verdict == Verdict.INCONCLUSIVE and "not recorded" in c.evidence
    absolute = Settings.from_cfg({**RCFG, "margin_kind": "absolute", "equivalence_margin": 0.01})
    assert comparable_claim(Evidence(no_base), absolute).verdict == Verdict.SUPPORTED
    # both cells at the trivial level (ln 2 on a 2-class task): not "comparable"
    stuck = [0.693, 0.6931, 0.6929, 0.693]
    trivial = make_sweep({("lstm", "small"): {"test_loss": stuck},
                          ("gru", "small"): {"test_loss": stuck}}, baseline=0.6931)
    c = comparable_claim(Evidence(trivial), S)
    assert c.verdict == Verdict.NO_ANSWER and "neither cell learned" in c.evidence


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


def _gap_sweep(lstm_small: list[float], gru_small: list[float], seeded: bool = False) -> Sweep:
    base = [0.010, 0.012, 0.008, 0.011]
    return make_sweep({
        ("lstm", "small"): {"gap_at_best": lstm_small, "test_loss": L[:4]},
        ("lstm", "large"): {"gap_at_best": base, "test_loss": L[:4]},
        ("gru", "small"): {"gap_at_best": gru_small, "test_loss": L[:4]},
        ("gru", "large"): {"gap_at_best": base, "test_loss": L[:4]},
    }, seeded=seeded)


def test_overfitting_is_an_interaction() -> None:
    big, small = [0.060, 0.064, 0.058, 0.062], [0.020, 0.022, 0.018, 0.021]
    assert overfits_claim(Evidence(_gap_sweep(big, small)), S).verdict == Verdict.SUPPORTED
    assert overfits_claim(Evidence(_gap_sweep(small, big)), S).verdict == Verdict.CONTRADICTED
    # both cells overfit equally on small data: a large gap alone is not the claim, and an
    # interval within a quarter of the gaps measured says "no difference"
    same = overfits_claim(Evidence(_gap_sweep(big, [v + 0.0005 for v in big])), S)
    assert same.verdict == Verdict.EQUIVALENT and same.mde is None
    assert same.effect == pytest.approx(-0.0005)
    assert "within ±0.015" in same.evidence  # 0.25 x the mean small-data gap 0.061
    # the same mean difference with a spread too wide to tell: undecided
    noisy = overfits_claim(Evidence(_gap_sweep([0.02, 0.10, 0.03, 0.09],
                                               [0.03, 0.11, 0.02, 0.09])), S)
    assert noisy.verdict == Verdict.INCONCLUSIVE and noisy.mde is not None


def test_overfitting_not_measured_without_both_sizes() -> None:
    sweep = make_sweep({("lstm", "small"): {"gap_at_best": L}, ("gru", "small"):
                        {"gap_at_best": L}})
    assert overfits_claim(Evidence(sweep), S).verdict == Verdict.NOT_MEASURED


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
    assert growing.verdict == Verdict.SUPPORTED
    assert growing.effect == pytest.approx(np.log(2), rel=0.05)  # x2 per doubling
    # the LSTM better by the same factor at every length: no trend, not supported
    level = long_range_claim(Evidence(_length_sweep({25: 3.0, 50: 3.0, 100: 3.0})), S)
    assert level.verdict != Verdict.SUPPORTED and abs(level.effect) < 0.1
    shrinking = long_range_claim(Evidence(_length_sweep({25: 4.0, 50: 2.0, 100: 1.0})), S)
    assert shrinking.verdict == Verdict.CONTRADICTED


def test_holm_re_decides_with_a_consistent_interval() -> None:
    sweep = _gap_sweep([0.060, 0.064, 0.058, 0.062], [0.020, 0.022, 0.018, 0.021])
    claim = overfits_claim(Evidence(sweep), S)
    strict = claim.decide(1e-9)  # type: ignore[misc]
    assert strict.verdict == Verdict.INCONCLUSIVE and strict.ci_low < 0 < strict.ci_high
    out = apply_holm([claim], 0.05)
    assert out[0].verdict == Verdict.SUPPORTED and "Holm over 1" in out[0].evidence


def test_build_claims_on_a_constructed_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnsweep.report import claims as claims_module
    from rnnsweep.report.claim_types import CLAIM_TEXTS, Claim

    # The cost probe rebuilds the task from MLflow: not part of this test.
    monkeypatch.setattr(claims_module, "cost_claims", lambda sweep, rcfg, *_: [
        Claim(t, Verdict.NOT_MEASURED, "probe skipped") for t in CLAIM_TEXTS[:3]])
    sweep = _gap_sweep([0.060, 0.064, 0.058, 0.062], [0.020, 0.022, 0.018, 0.021])
    claims = build_claims(sweep, RCFG)
    assert len(claims) == 6
    by = {c.claim: c for c in claims}
    assert by["LSTM overfits more on small data"].verdict == Verdict.SUPPORTED
    assert by["LSTM and GRU perform comparably"].verdict == Verdict.SUPPORTED


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


# -- margins that hold near zero loss, and guards for cells that learned nothing -------------
RATIO = Settings.from_cfg({"alpha": 0.05, "test_metric": "test_loss",
                           "length_keys": ["T", "seq_len"]})  # the default: a ratio band


def test_the_default_band_is_a_ratio_of_losses_that_holds_near_zero() -> None:
    assert RATIO.margin_kind == "ratio" and RATIO.equivalence_ratio == 1.25
    # 0.0005 against 0.047 (90x apart) on a task whose trivial loss is 0.78: an absolute
    # 10 % of the trivial loss (+-0.078) called them comparable; a ratio band does not
    tiny = [0.00050, 0.00052, 0.00048, 0.00051]
    far = make_sweep({("lstm", "small"): {"test_loss": tiny},
                      ("gru", "small"): {"test_loss": [v * 94 for v in tiny]}}, baseline=0.78)
    assert comparable_claim(Evidence(far), S).verdict == Verdict.SUPPORTED  # the old margin
    c = comparable_claim(Evidence(far), RATIO)
    assert c.verdict == Verdict.CONTRADICTED and c.ci_low > np.log(1.25)
    assert "gru/lstm ratio" in c.evidence and "band 0.8 to 1.25" in c.evidence
    # 2 % apart at the same tiny scale: equivalent on the ratio scale
    near = make_sweep({("lstm", "small"): {"test_loss": tiny},
                       ("gru", "small"): {"test_loss": [v * 1.02 for v in tiny]}}, baseline=0.78)
    c = comparable_claim(Evidence(near), RATIO)
    assert c.verdict == Verdict.SUPPORTED and c.effect == pytest.approx(np.log(1.02), abs=1e-6)


def test_an_accuracy_is_compared_on_its_error_rate() -> None:
    s = Settings.from_cfg({"test_metric": "test_acc"})
    a = [0.981, 0.983, 0.982, 0.984]  # errors 1.6-1.9 %
    sweep = make_sweep({("lstm", "small"): {"test_acc": a},
                        ("gru", "small"): {"test_acc": [v - 0.03 for v in a]}})  # ~4.8 %
    c = comparable_claim(Evidence(sweep), s)
    assert c.verdict == Verdict.CONTRADICTED and "error rate" in c.evidence
    assert c.effect == pytest.approx(np.log(np.mean([0.049, 0.047, 0.048, 0.046]) / 0.0175),
                                     rel=0.05)


def test_a_ratio_below_one_is_refused() -> None:
    from rnnsweep.errors import ConfigError

    with pytest.raises(ConfigError, match="report.equivalence_ratio"):
        Settings.from_cfg({"equivalence_ratio": 0.8})


def test_overfitting_uses_only_sizes_where_both_cells_learned() -> None:
    big, small = [0.060, 0.064, 0.058, 0.062], [0.020, 0.022, 0.018, 0.021]
    stuck = [0.17, 0.171, 0.169, 0.17]  # the GRU learned nothing on small data
    sweep = make_sweep({
        ("lstm", "small"): {"gap_at_best": big, "test_loss": L[:4]},
        ("lstm", "large"): {"gap_at_best": small, "test_loss": L[:4]},
        ("gru", "small"): {"gap_at_best": small, "test_loss": stuck},
        ("gru", "large"): {"gap_at_best": small, "test_loss": L[:4]},
    })
    c = overfits_claim(Evidence(sweep), S)
    assert c.verdict == Verdict.NO_ANSWER and "gru on small" in c.evidence


def _lengths(values: dict[int, tuple[float, float]], baseline: float = 0.17,
             draw_sd: float = 0.0, seeded: bool = False) -> Sweep:
    """{T: (lstm mean, gru mean)} with a 5 % spread over 5 seeds; draw_sd: each seed's data
    draw moves both cells' losses alike (log scale)."""
    rng = np.random.default_rng(1)
    studies = {}
    for length, (lstm, gru) in values.items():
        draw = rng.normal(0, draw_sd, 5)
        for cell, m in (("lstm", lstm), ("gru", gru)):
            studies[(cell, "small", length)] = {
                "test_loss": (m * np.exp(draw + rng.normal(0, 0.05, 5))).tolist()}
    return make_sweep(studies, baseline=baseline, axis="T", seeded=seeded)


def test_long_range_is_never_supported_where_the_lstm_is_never_better() -> None:
    """The issue's case: the GRU better at T=10 and 20, both at the trivial loss at T=40.
    The slope of log(GRU/LSTM) is positive, yet the LSTM is never better."""
    case = long_range_claim(Evidence(_lengths({10: (0.02, 0.01), 20: (0.06, 0.04),
                                               40: (0.17, 0.17)})), RATIO)
    assert case.verdict in (Verdict.NO_ANSWER, Verdict.CONTRADICTED), case.evidence
    assert "T=40 left out: neither cell learned it" in case.evidence
    # a growing advantage that stays negative (the GRU winning by less): not supported
    catching_up = long_range_claim(Evidence(_lengths({10: (0.04, 0.01), 20: (0.04, 0.02),
                                                      40: (0.04, 0.03)})), RATIO)
    assert catching_up.verdict == Verdict.CONTRADICTED, catching_up.evidence
    # real, growing, and the LSTM ahead at the longest length where a cell learned: supported
    real = long_range_claim(Evidence(_lengths({10: (0.02, 0.02), 20: (0.02, 0.05),
                                               40: (0.03, 0.12)})), RATIO)
    assert real.verdict == Verdict.SUPPORTED, real.evidence
    # neither cell learns the shortest length: the task separates nothing
    none = long_range_claim(Evidence(_lengths({10: (0.169, 0.17), 20: (0.17, 0.17),
                                               40: (0.17, 0.171)})), RATIO)
    assert none.verdict == Verdict.NO_ANSWER


def test_long_range_counts_only_lengths_both_cells_learned() -> None:
    only_lstm = long_range_claim(Evidence(_lengths({10: (0.02, 0.17), 20: (0.03, 0.17),
                                                    40: (0.05, 0.17)})), RATIO)
    assert only_lstm.verdict == Verdict.NO_ANSWER, only_lstm.evidence
    assert "T=10 left out: gru did not learn it" in only_lstm.evidence
    # The GRU learns T=120 and the LSTM stays at the trivial loss (a plateau the budget may
    # have ended): equal cells where both learned, so nothing decides the claim, not T=120.
    plateau = long_range_claim(Evidence(_lengths({10: (0.02, 0.02), 40: (0.03, 0.03),
                                                  120: (0.17, 0.05)})), RATIO)
    assert plateau.verdict == Verdict.INCONCLUSIVE, plateau.evidence
    assert "T=120 left out: lstm did not learn it" in plateau.evidence
    assert "the budget's" in plateau.evidence


def test_comparable_leaves_out_a_condition_only_one_cell_learned() -> None:
    """The GRU learns one length, the LSTM stays at the trivial loss there: that condition
    decides nothing; where both learned, equal losses are 'comparable'."""
    sweep = _lengths({10: (0.02, 0.02), 120: (0.17, 0.05)}, draw_sd=0.3, seeded=True)
    c = comparable_claim(Evidence(sweep), RATIO)
    assert "T=120 left out: lstm did not learn it" in c.evidence, c.evidence
    assert c.verdict != Verdict.CONTRADICTED, c.evidence
    alone = comparable_claim(Evidence(_lengths({120: (0.17, 0.05)})), RATIO)
    assert alone.verdict == Verdict.NO_ANSWER, alone.evidence


# -- any two cells --------------------------------------------------------------------------
def test_claims_compare_the_cells_a_sweep_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnsweep.report import claims as claims_module
    from rnnsweep.report.claim_types import Claim, Pair, claim_pairs

    seen_pairs = []

    def no_probe(sweep, rcfg, pairs):  # noqa: ANN001, ANN202 - the probe is tested elsewhere
        seen_pairs.extend(pairs)
        return [Claim(t, Verdict.NOT_MEASURED, "probe skipped")
                for p in pairs for t in p.texts()[:3]]

    monkeypatch.setattr(claims_module, "cost_claims", no_probe)
    far = [v * 1.4 for v in L]  # outside the 1.25 band, still below the trivial 0.17
    sweep = make_sweep({("gru", "small"): {"test_loss": L},
                        ("mingru", "small"): {"test_loss": far}})
    claims = build_claims(sweep, {**RCFG, "margin_kind": "ratio"})
    assert seen_pairs == [Pair("gru", "mingru")]
    by = {c.claim: c for c in claims}
    assert set(by) == set(Pair("gru", "mingru").texts())
    assert "mingru trains faster than GRU" in by
    comparable = by["GRU and mingru perform comparably"]
    assert comparable.verdict == Verdict.CONTRADICTED and "mingru vs gru" in comparable.evidence
    # the article's pair when the sweep ran both of its cells, whatever else it ran
    assert claim_pairs(["rnn", "gru", "lstm"], ["lstm", "gru"]) == [Pair("lstm", "gru", True)]
    assert claim_pairs(["rnn", "gru", "mingru"], ["lstm", "gru"]) == [
        Pair("gru", "mingru"), Pair("gru", "rnn"), Pair("mingru", "rnn")]
    # one cell: nothing to compare
    alone = build_claims(make_sweep({("gru", "small"): {"test_loss": L}}), RCFG)
    assert {c.verdict for c in alone} == {Verdict.NOT_MEASURED} and len(alone) == 6


def test_the_overfitting_claim_says_what_each_search_tuned() -> None:
    sweep = _gap_sweep([0.060, 0.064, 0.058, 0.062], [0.020, 0.022, 0.018, 0.021])
    sweep.space = {"lr": {}, "hidden_size": {}, "dropout": {}}
    assert "tuned per study: dropout, hidden_size, lr" in overfits_claim(Evidence(sweep),
                                                                          S).evidence
    sweep.space = {"lr": {}}
    assert "controlled: the same architecture" in overfits_claim(Evidence(sweep), S).evidence


def test_the_controlled_profile_tunes_the_learning_rate_alone() -> None:
    """`search.space.<name>: null` in a profile takes the parameter out of the space."""
    from conftest import ROOT
    from hydra import compose, initialize_config_dir

    from rnnsweep.job import typed_config

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = typed_config(compose("config", overrides=["experiment=controlled",
                                                        "cell=gru"]))
    assert list(cfg.search.space) == ["lr"]
    assert (cfg.model.num_layers, cfg.model.hidden_size, cfg.model.dropout) == (1, 64, 0.2)
    assert cfg.data.noise_sd == 0.3 and cfg.data.n_train_small == 200  # the default's data


# -- seeds pair: seed k of every cell and size shares k's data draw ------------------------
DRAW = np.array([0.0, 0.5, -0.4, 0.3, -0.2, 0.6, -0.5])  # log-scale effect of seed k's draw


def test_comparable_pairs_seeds_that_share_their_data_draw() -> None:
    lstm = list(0.1 * np.exp(DRAW))
    gru = list(0.1 * 1.03 * np.exp(DRAW + [0.01, -0.01, 0.02, 0.0, -0.02, 0.01, 0.0]))
    studies = {("lstm", "small"): {"test_loss": lstm}, ("gru", "small"): {"test_loss": gru}}
    unpaired = comparable_claim(Evidence(make_sweep(studies)), Settings())
    paired = comparable_claim(Evidence(make_sweep(studies, seeded=True)), Settings())
    # the draws' spread swamps Welch's interval; the differences on matched seeds do not
    assert unpaired.verdict == Verdict.INCONCLUSIVE
    assert paired.verdict == Verdict.SUPPORTED and "paired t-test over seeds" in paired.evidence
    assert "n=7 pairs" in paired.evidence
    assert paired.effect == pytest.approx(np.mean(np.log(np.array(gru) / lstm)))


def test_seeds_without_a_partner_are_left_out_and_said() -> None:
    sweep = make_sweep({("lstm", "small"): {"test_loss": list(0.1 * np.exp(DRAW))},
                        ("gru", "small"): {"test_loss": list(0.1 * np.exp(DRAW[:5]))}},
                       seeded=True)
    ev = Evidence(sweep)
    a, b, unmatched = ev.paired(("lstm", "gru"), "small", "metrics.test_loss")
    assert a == pytest.approx(b) and len(a) == 5 and unmatched == 2
    claim = comparable_claim(ev, Settings())
    assert "2 seed(s) without a partner in the other cell left out" in claim.evidence


def test_overfitting_pairs_seeds_at_each_size() -> None:
    # the gaps move with each seed's draw, alike for both cells: Welch cannot tell, the
    # per-seed cell differences can (the LSTM's small-data gap 0.03 above the GRU's each time)
    gru_small = [0.02, 0.10, 0.03, 0.09]
    lstm_small = [v + 0.030 + e for v, e in zip(gru_small, [0.001, -0.001, 0.0005, -0.0005],
                                                   strict=True)]
    assert overfits_claim(Evidence(_gap_sweep(lstm_small, gru_small)), S).verdict \
        == Verdict.INCONCLUSIVE
    paired = overfits_claim(Evidence(_gap_sweep(lstm_small, gru_small, seeded=True)), S)
    assert paired.verdict == Verdict.SUPPORTED and paired.effect == pytest.approx(0.030)
    assert "paired by seed at each size" in paired.evidence


def test_long_range_pairs_seeds_at_each_length() -> None:
    growing = {10: (0.02, 0.02), 20: (0.02, 0.03), 40: (0.03, 0.06)}
    unpaired = long_range_claim(Evidence(_lengths(growing, draw_sd=0.5)), RATIO)
    paired = long_range_claim(Evidence(_lengths(growing, draw_sd=0.5, seeded=True)), RATIO)
    assert unpaired.verdict == Verdict.INCONCLUSIVE, unpaired.evidence
    assert paired.verdict == Verdict.SUPPORTED and "paired by seed" in paired.evidence


def test_overfitting_leaves_out_seeds_that_did_not_learn() -> None:
    # LSTM seed 2 stayed near the trivial loss (0.17): its gap (-0.05) says nothing about
    # overfitting and would pull the interaction down; the pair is left out and counted
    gru_small = [0.02, 0.10, 0.03, 0.09]
    lstm_small = [v + 0.030 for v in gru_small]
    lstm_small[2] = -0.05
    sweep = _gap_sweep(lstm_small, gru_small, seeded=True)
    stuck = (sweep.reevals["tags.cell"] == "lstm") & (sweep.reevals["tags.data_size"] == "small") \
        & (sweep.reevals["tags.reeval_seed"] == "1000002")
    sweep.reevals.loc[stuck, "metrics.test_loss"] = 0.168
    claim = overfits_claim(Evidence(sweep), S)
    assert claim.verdict == Verdict.SUPPORTED and claim.effect == pytest.approx(0.030)
    assert "small: 1 seed pair(s) left out where a seed did not learn" in claim.evidence
