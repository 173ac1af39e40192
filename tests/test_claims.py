"""Verdict logic on constructed numbers where the right verdict is known."""

from __future__ import annotations

import pytest

from rnnsweep.report.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_MEASURED,
    SUPPORTED,
    comparable_verdict,
    fewer_params_verdict,
    lower_is_better_verdict,
    ratio_verdict,
    verdict_from_test,
)
from rnnsweep.report.stats import compare_means, paired_ratio

LSTM = [0.10, 0.11, 0.09, 0.105, 0.095]


def test_verdict_from_test() -> None:
    assert verdict_from_test(True, 0.01, 0.05) == SUPPORTED
    assert verdict_from_test(False, 0.01, 0.05) == CONTRADICTED
    assert verdict_from_test(True, 0.2, 0.05) == INCONCLUSIVE


def test_fewer_params() -> None:
    assert fewer_params_verdict([100, 200], [75, 150])[0] == SUPPORTED
    assert fewer_params_verdict([100, 200], [120, 250])[0] == CONTRADICTED
    assert fewer_params_verdict([100, 200], [75, 250])[0] == INCONCLUSIVE
    assert fewer_params_verdict([], [])[0] == NOT_MEASURED


def test_gru_faster_supported_and_contradicted() -> None:
    lstm = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    faster = [v * 0.7 for v in lstm]
    slower = [v * 3.0 for v in lstm]
    assert ratio_verdict(paired_ratio(lstm, faster), 0.05)[0] == SUPPORTED
    assert ratio_verdict(paired_ratio(lstm, slower), 0.05)[0] == CONTRADICTED
    # four pairs cannot reach p < 0.05 with an exact two-sided Wilcoxon test
    assert ratio_verdict(paired_ratio(lstm[:4], faster[:4]), 0.05)[0] == INCONCLUSIVE
    assert ratio_verdict(None, 0.05)[0] == NOT_MEASURED


@pytest.mark.parametrize(("gru", "claim_lower", "expected"), [
    ([v + 0.05 for v in LSTM], "lstm", SUPPORTED),     # LSTM lower, as claimed
    ([v - 0.05 for v in LSTM], "lstm", CONTRADICTED),
    ([v - 0.05 for v in LSTM], "gru", SUPPORTED),
    ([0.09, 0.115, 0.1, 0.1, 0.098], "lstm", INCONCLUSIVE),
])
def test_lower_is_better(gru: list[float], claim_lower: str, expected: str) -> None:
    comp = compare_means(LSTM, gru, resamples=500)
    assert lower_is_better_verdict(comp, 0.05, claim_lower)[0] == expected


def test_comparable() -> None:
    same = [v + 0.0005 for v in LSTM]
    far = [v + 0.05 for v in LSTM]
    many_lstm = LSTM * 4
    close = [v * 1.001 for v in many_lstm]
    assert comparable_verdict({"large": compare_means(many_lstm, close)}, 0.1, 0.05)[0] \
        == SUPPORTED
    assert comparable_verdict({"small": compare_means(LSTM, same), "large":
                               compare_means(LSTM, far)}, 0.1, 0.05)[0] == CONTRADICTED
    wide = [0.05, 0.2, 0.08, 0.15, 0.02]  # spread too large to show equivalence
    assert comparable_verdict({"small": compare_means(LSTM, wide)}, 0.1, 0.05)[0] \
        == INCONCLUSIVE
    assert comparable_verdict({"small": None}, 0.1, 0.05)[0] == INCONCLUSIVE


def _sweep_with_lengths(lstm_long: list[float], gru_long: list[float]):
    """Parents at T=25 and T=400 for both cells; re-evaluation test losses per study."""
    import pandas as pd

    from rnnsweep.report.collect import Sweep, condition_label

    parents, reevals = [], []
    for cell in ("lstm", "gru"):
        for length in ("25", "400"):
            pid = f"{cell}-{length}"
            parents.append({"run_id": pid, "tags.cell": cell, "tags.data_size": "small",
                            "tags.data.T": length, "tags.study_name": pid})
            values = ([0.1, 0.11, 0.09] if length == "25"
                      else (lstm_long if cell == "lstm" else gru_long))
            reevals += [{"tags.mlflow.parentRunId": pid, "tags.cell": cell, "status":
                         "FINISHED", "tags.data_size": "small", "tags.data.T": length,
                         "metrics.test_loss": v} for v in values]
    p, r = pd.DataFrame(parents), pd.DataFrame(reevals)
    for df in (p, r):
        df["condition"] = [condition_label(row, ["tags.data.T"]) for _, row in df.iterrows()]
    return Sweep(experiment="adding", sweep_id="s", metric="val_loss", direction="minimize",
                 space={}, parents=p, trials=pd.DataFrame(), reevals=r,
                 axes=["tags.data.T"])


RCFG = {"alpha": 0.05, "test_metric": "test_loss", "length_keys": ["T", "seq_len"],
        "bootstrap_resamples": 500, "seed": 0}


def test_long_range_uses_the_longest_length() -> None:
    from rnnsweep.report.claims import _long_range

    better = _long_range(_sweep_with_lengths([0.2, 0.21, 0.19], [0.5, 0.52, 0.48]),
                         "metrics.test_loss", 0.05, RCFG)
    assert better.verdict == SUPPORTED and "T=400" in better.evidence
    worse = _long_range(_sweep_with_lengths([0.5, 0.52, 0.48], [0.2, 0.21, 0.19]),
                        "metrics.test_loss", 0.05, RCFG)
    assert worse.verdict == CONTRADICTED
