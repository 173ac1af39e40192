"""Learning curves in data size: curve sizes, the power-law fits, the crossing, and the
overfitting claim from the whole curve, on constructed sweeps with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from rnnsweep.data.registry import build_datamodule
from rnnsweep.data.sizes import curve_point, train_count
from rnnsweep.errors import ConfigError
from rnnsweep.report.claim_types import Verdict
from rnnsweep.report.collect import Sweep, condition_label
from rnnsweep.report.curves import crossing, curve_points, curves_table, slope
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.performance_claims import overfits_claim
from rnnsweep.report.settings import Settings

S = Settings.from_cfg({"alpha": 0.05, "test_metric": "test_loss"})
SIZES = {"0.01": 40, "0.03": 120, "0.1": 400, "0.3": 1200, "1": 4000}


def curve_sweep(loss: dict[str, tuple[float, float]], gap: dict[str, tuple[float, float]],
                seeds: int = 5, spread: float = 0.03) -> Sweep:
    """Per cell, loss = c * n^b and gap = g * n^h (each (c, b) / (g, h)), log-normal seeds."""
    import pandas as pd

    rng = np.random.default_rng(0)
    parents, reevals = [], []
    for cell in loss:
        for size, n in SIZES.items():
            pid = f"{cell}-{size}"
            parents.append({"run_id": pid, "tags.cell": cell, "tags.data_size": size,
                            "tags.data.n": str(n), "tags.study_name": pid,
                            "tags.best_trial_number": "1", "metrics.baseline_loss": 10.0})
            c, b = loss[cell]
            g, h = gap[cell]
            for i in range(seeds):
                noise = np.exp(rng.normal(0, spread))
                reevals.append({"run_id": f"{pid}-{i}", "tags.mlflow.parentRunId": pid,
                                "tags.cell": cell, "tags.data_size": size,
                                "status": "FINISHED", "tags.state": "COMPLETE",
                                "tags.best_trial_number": "1", "tags.role": "reeval",
                                "metrics.test_loss": c * n ** b * noise,
                                "metrics.gap_at_best": g * n ** h * noise})
    p, r = pd.DataFrame(parents), pd.DataFrame(reevals)
    for df in (p, r):
        df["condition"] = [condition_label(row, []) for _, row in df.iterrows()]
    return Sweep(experiment="adding", sweep_id="s", metric="val_loss", direction="minimize",
                 space={"lr": {}}, parents=p, trials=pd.DataFrame(), reevals=r)


def test_sizes_are_named_fractions_or_counts() -> None:
    assert curve_point("small") is None and curve_point("0.25") == 0.25
    assert train_count("0.25", 200, 4000) == 1000 and train_count("500", 200, 4000) == 500
    assert train_count("1", 200, 4000) == 4000 and train_count("small", 200, 4000) == 200
    dm = build_datamodule(OmegaConf.create({"task": "adding", "size": "0.1"}))
    assert dm.n_train == 400 and dm.condition()["n"] == "400"
    for bad, words in (("0", "a fraction in (0, 1]"), ("2.5", "a count >= 2"),
                       ("big", "allowed: small, large"), ("9000", "more than the 4000")):
        with pytest.raises(ConfigError, match="data.size") as err:
            build_datamodule(OmegaConf.create({"task": "adding", "size": bad}))
        assert words in str(err.value)
    with pytest.raises(ConfigError, match="no learning-curve sizes"):
        build_datamodule(OmegaConf.create({"task": "anbn", "size": "0.5"}))


def test_power_laws_and_their_crossing_are_recovered() -> None:
    """LSTM loss 2 n^-0.5, GRU n^-0.3: they cross where n^0.2 = 2, at n = 32... outside the
    sizes (40-4000), so no crossing; with GRU 3 n^-0.3 they cross at n = 3^5 / 2^5 ~ 7.6;
    with GRU 0.5 n^-0.3 at n = 4^5 = 1024, inside."""
    sweep = curve_sweep({"lstm": (2.0, -0.5), "gru": (0.5, -0.3)},
                        {"lstm": (1.0, -0.5), "gru": (1.0, -0.2)})
    groups = curve_points(Evidence(sweep), S)
    cells = groups[""]
    assert [p.n for p in cells["lstm"]] == [40, 120, 400, 1200, 4000]
    b = slope(cells["lstm"], "loss", log_y=True)
    assert b is not None and b.estimate == pytest.approx(-0.5, abs=0.02)
    lo, hi = b.interval(0.95)
    assert lo < -0.5 < hi
    cross = crossing(cells["gru"], cells["lstm"], seed=0)
    assert cross is not None and cross[0] == pytest.approx(1024, rel=0.15)
    assert cross[1] < 1024 < cross[2]
    far = curve_sweep({"lstm": (2.0, -0.5), "gru": (1.0, -0.3)},
                      {"lstm": (1.0, -0.5), "gru": (1.0, -0.2)})
    far_cells = curve_points(Evidence(far), S)[""]
    assert crossing(far_cells["gru"], far_cells["lstm"], seed=0) is None
    table = curves_table(Evidence(far), S)
    assert "no crossing in the measured range" in set(table["crossing n"].dropna())


def test_overfitting_from_the_whole_curve() -> None:
    """The LSTM's gap shrinks faster with data (n^-0.5 against n^-0.2): with five sizes the
    claim uses the slope difference and is supported; equal slopes: equivalent."""
    faster = curve_sweep({"lstm": (1.0, -0.3), "gru": (1.0, -0.3)},
                         {"lstm": (1.0, -0.5), "gru": (0.3, -0.2)})
    claim = overfits_claim(Evidence(faster), S)
    assert claim.verdict == Verdict.SUPPORTED, claim.evidence
    assert "slope against log(training sequences)" in claim.evidence
    same = curve_sweep({"lstm": (1.0, -0.3), "gru": (1.0, -0.3)},
                       {"lstm": (0.2, -0.3), "gru": (0.2, -0.3)}, spread=0.01)
    assert overfits_claim(Evidence(same), S).verdict == Verdict.EQUIVALENT
