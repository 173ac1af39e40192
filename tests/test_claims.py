"""Verdict logic on constructed numbers where the right verdict is known."""

from __future__ import annotations

import pytest

from rnnsweep.report.claim_types import Verdict
from rnnsweep.report.claims import verdict_from_test


def test_verdict_from_test() -> None:
    assert verdict_from_test(True, 0.01, 0.05) == Verdict.SUPPORTED
    assert verdict_from_test(False, 0.01, 0.05) == Verdict.CONTRADICTED
    assert verdict_from_test(True, 0.2, 0.05) == Verdict.INCONCLUSIVE


def test_direction_of_the_test_metric() -> None:
    from rnnsweep.report.settings import Settings, derived_direction

    assert derived_direction("test_acc") == "maximize"
    assert derived_direction("test_loss") == "minimize"
    s = Settings.from_cfg({"test_metric": "test_acc", "margin_kind": "absolute"})
    assert s.maximize and s.effect_scale() == "raw"
    assert Settings.from_cfg({"test_metric": "test_acc",
                              "test_metric_direction": "minimize"}).maximize is False
    with pytest.raises(ValueError):
        Settings.from_cfg({"margin_kind": "relative_to_lstm"})


def test_accuracy_higher_is_better_is_not_contradicted() -> None:
    """LSTM 0.91 vs GRU 0.51 test accuracy: the LSTM is better, so 'comparable' is
    contradicted by the margin, and a higher accuracy is never read as a worse loss."""
    from rnnsweep.report.evidence import Evidence
    from rnnsweep.report.performance_claims import comparable_claim
    from rnnsweep.report.settings import Settings

    sweep = _sweep_with_lengths([0.91, 0.90, 0.92], [0.51, 0.50, 0.52], metric="test_acc")
    s = Settings.from_cfg({"test_metric": "test_acc", "margin_kind": "absolute",
                           "equivalence_margin": 0.05})
    c = comparable_claim(Evidence(sweep), s)
    assert c.verdict == Verdict.CONTRADICTED and c.effect == pytest.approx(-0.4)


def _sweep_with_lengths(lstm_long: list[float], gru_long: list[float],
                        metric: str = "test_loss"):
    """Parents at T=25 and T=400 for both cells; re-evaluation values per study."""
    import pandas as pd

    from rnnsweep.report.collect import Sweep, condition_label

    parents, reevals = [], []
    for cell in ("lstm", "gru"):
        for length in ("25", "400"):
            pid = f"{cell}-{length}"
            parents.append({"run_id": pid, "tags.cell": cell, "tags.data_size": "small",
                            "tags.data.T": length, "tags.study_name": pid,
                            "tags.best_trial_number": "0"})
            values = ([0.1, 0.11, 0.09] if length == "25"
                      else (lstm_long if cell == "lstm" else gru_long))
            if metric == "test_acc":
                values = lstm_long if cell == "lstm" else gru_long
            reevals += [{"tags.mlflow.parentRunId": pid, "tags.cell": cell, "status":
                         "FINISHED", "tags.data_size": "small", "tags.data.T": length,
                         "tags.best_trial_number": "0", f"metrics.{metric}": v}
                        for v in values]
    p, r = pd.DataFrame(parents), pd.DataFrame(reevals)
    for df in (p, r):
        df["condition"] = [condition_label(row, ["tags.data.T"]) for _, row in df.iterrows()]
    return Sweep(experiment="adding", sweep_id="s", metric="val_loss", direction="minimize",
                 space={}, parents=p, trials=pd.DataFrame(), reevals=r,
                 axes=["tags.data.T"])


RCFG = {"alpha": 0.05, "test_metric": "test_loss", "length_keys": ["T", "seq_len"]}


def test_long_range_is_a_trend_not_a_level() -> None:
    from rnnsweep.report.evidence import Evidence
    from rnnsweep.report.long_range_claim import long_range_claim
    from rnnsweep.report.settings import Settings

    s = Settings.from_cfg(RCFG)
    # at T=25 both near 0.1; at T=400 the GRU is 2.5x worse: the advantage grows
    better = long_range_claim(Evidence(_sweep_with_lengths([0.1, 0.105, 0.095],
                                                           [0.25, 0.26, 0.24])), s)
    assert better.verdict == Verdict.SUPPORTED and "T=400" in better.evidence
    worse = long_range_claim(Evidence(_sweep_with_lengths([0.25, 0.26, 0.24],
                                                          [0.1, 0.105, 0.095])), s)
    assert worse.verdict == Verdict.CONTRADICTED
