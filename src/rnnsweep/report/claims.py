"""The claims table: one verdict per common LSTM-vs-GRU claim, with the numbers behind it.

Verdict functions take plain numbers (so they can be tested on constructed inputs);
`build_claims` extracts those numbers from a sweep.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnsweep.report.claim_types import (
    CLAIM_TEXTS,
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_MEASURED,
    SUPPORTED,
    Claim,
)
from rnnsweep.report.collect import Sweep
from rnnsweep.report.cost_claims import cost_claims
from rnnsweep.report.stats import Comparison, PairedRatio, compare_means


def verdict_from_test(favours_claim: bool, p_value: float, alpha: float) -> str:
    """Significant in the claimed direction: supported; significant against it: contradicted."""
    if p_value >= alpha:
        return INCONCLUSIVE
    return SUPPORTED if favours_claim else CONTRADICTED


def fewer_params_verdict(lstm: list[float], gru: list[float]) -> tuple[str, str]:
    """Counts are exact, no test needed: every identical configuration must agree."""
    if not lstm:
        return NOT_MEASURED, "no configuration was trained with both cells"
    ratios = np.asarray(gru, float) / np.asarray(lstm, float)
    text = (f"GRU/LSTM parameters {ratios.min():.3g}-{ratios.max():.3g} over {len(ratios)} "
            "identical configurations")
    if np.all(ratios < 1):
        return SUPPORTED, text
    if np.all(ratios >= 1):
        return CONTRADICTED, text
    return INCONCLUSIVE, text


def ratio_verdict(r: PairedRatio | None, alpha: float) -> tuple[str, str]:
    """Claims 'GRU needs less X': supported when GRU/LSTM < 1 significantly."""
    if r is None:
        return NOT_MEASURED, "no configuration with this measurement in both cells"
    return verdict_from_test(r.geo_mean < 1, r.p_value, alpha), r.text()


def lower_is_better_verdict(
    c: Comparison | None, alpha: float, claim_lower: str
) -> tuple[str, str]:
    """c compares GRU (b) against LSTM (a); claim_lower names which cell the claim says is
    lower ('lstm' or 'gru')."""
    if c is None:
        return INCONCLUSIVE, "fewer than two re-evaluation seeds per cell"
    gru_lower = c.diff < 0
    favours = gru_lower if claim_lower == "gru" else not gru_lower
    return verdict_from_test(favours, c.p_value, alpha), c.text()


def comparable_verdict(
    comparisons: dict[str, Comparison | None], margin: float, alpha: float
) -> tuple[str, str]:
    """Equivalence: every condition's CI of the difference lies within +-margin x |LSTM mean|;
    contradicted when some condition differs significantly by more than the margin."""
    usable = {k: c for k, c in comparisons.items() if c is not None}
    if not usable:
        return INCONCLUSIVE, "fewer than two re-evaluation seeds per cell"
    parts, equivalent, different = [], True, False
    for cond, c in usable.items():
        bound = margin * abs(c.mean_a)
        parts.append(f"{cond}: {c.text()}, margin +-{bound:.3g}")
        equivalent &= -bound <= c.ci_low and c.ci_high <= bound
        different |= c.p_value < alpha and abs(c.diff) > bound
    if different:
        return CONTRADICTED, "; ".join(parts)
    return (SUPPORTED if equivalent else INCONCLUSIVE), "; ".join(parts)


# -- extraction from a sweep --------------------------------------------------------------

def _cell_rows(df: pd.DataFrame, cell: str) -> pd.DataFrame:
    return df[df["tags.cell"] == cell]


def identical_pairs(sweep: Sweep, column: str) -> tuple[list[float], list[float]]:
    """Values of `column` for LSTM and GRU trials that share condition, every sampled
    parameter and the seed (the sampler's seeded start-up trials are identical across cells)."""
    params = [f"params.{k}" for k in sweep.space if f"params.{k}" in sweep.trials.columns]
    keys = ["condition", *params, "params.seed"]
    if column not in sweep.trials.columns or not params:
        return [], []
    lstm = _cell_rows(sweep.trials, "lstm")[[*keys, column]]
    gru = _cell_rows(sweep.trials, "gru")[[*keys, column]]
    merged = lstm.merge(gru, on=keys, suffixes=("_lstm", "_gru")).dropna()
    return merged[f"{column}_lstm"].tolist(), merged[f"{column}_gru"].tolist()


def reeval_values(sweep: Sweep, cell: str, condition: str, column: str) -> list[float]:
    df = sweep.reevals
    if df.empty or column not in df.columns:
        return []
    rows = df[(df["tags.cell"] == cell) & (df["condition"] == condition)
              & (df["status"] == "FINISHED")]
    return rows[column].dropna().tolist()


def mean_epoch_seconds(sweep: Sweep) -> None:
    """Trials pruned early have no final seconds_per_epoch; their epochs still count."""
    sweep.trials["epoch_seconds_mean"] = [
        float(np.mean([v for _, v in sweep.curves[r].get("epoch_seconds", [])]))
        if sweep.curves.get(r, {}).get("epoch_seconds") else np.nan
        for r in sweep.trials["run_id"]
    ]


def device_text(parent: pd.Series) -> str:
    backend = parent.get("tags.backend")
    if not isinstance(backend, str):
        return f"{parent['tags.cell']}: device not recorded"
    return f"{parent['tags.cell']}: {parent.get('tags.device')} / {backend}"


def build_claims(sweep: Sweep, rcfg: dict) -> list[Claim]:
    alpha, margin = float(rcfg["alpha"]), float(rcfg["equivalence_margin"])
    test_col = f"metrics.{rcfg['test_metric']}"
    cells = set(sweep.parents["tags.cell"])
    if not {"lstm", "gru"} <= cells:
        note = f"{NOT_MEASURED}; run `python train.py -m cell=lstm,gru`"
        return [Claim(c, NOT_MEASURED, note) for c in CLAIM_TEXTS]
    claims = cost_claims(sweep, rcfg)
    claims.append(_long_range(sweep, test_col, alpha, rcfg))
    claims.append(_overfits_small(sweep, alpha, rcfg))
    comps = {
        cond: compare_means(reeval_values(sweep, "lstm", cond, test_col),
                            reeval_values(sweep, "gru", cond, test_col),
                            int(rcfg["bootstrap_resamples"]), int(rcfg["seed"]))
        for cond in sorted(set(sweep.parents["condition"]))
    }
    v, e = comparable_verdict(comps, margin, alpha)
    claims.append(Claim(CLAIM_TEXTS[5], v, f"{rcfg['test_metric']} (GRU - LSTM) over "
                        f"re-evaluation seeds: {e}", "Chung et al. 2014; Greff et al. 2017"))
    return claims


def _long_range(sweep: Sweep, test_col: str, alpha: float, rcfg: dict) -> Claim:
    axes = [a for a in sweep.axes if a.removeprefix("tags.data.") in rcfg["length_keys"]]
    if not axes:
        return Claim(CLAIM_TEXTS[3], NOT_MEASURED,
                     f"{NOT_MEASURED}: the sweep has one sequence length; measure it with "
                     "`python train.py -m cell=lstm,gru data.seq_len=25,50,100,200,400`",
                     "Weiss et al. 2018")
    axis = axes[0]
    length_of = dict(zip(sweep.parents["condition"], sweep.parents[axis].astype(int),
                         strict=False))
    longest = max(length_of.values())
    conds = [c for c, n in length_of.items() if n == longest]
    comp = compare_means(
        sum((reeval_values(sweep, "lstm", c, test_col) for c in conds), []),
        sum((reeval_values(sweep, "gru", c, test_col) for c in conds), []),
        int(rcfg["bootstrap_resamples"]), int(rcfg["seed"]),
    )
    v, e = lower_is_better_verdict(comp, alpha, claim_lower="lstm")
    return Claim(CLAIM_TEXTS[3], v, f"{rcfg['test_metric']} (GRU - LSTM) at the longest "
                 f"{axis.removeprefix('tags.data.')}={longest}: {e}", "Weiss et al. 2018")


def _overfits_small(sweep: Sweep, alpha: float, rcfg: dict) -> Claim:
    small = sorted(c for c in set(sweep.parents["condition"]) if c.startswith("small"))
    if not small:
        return Claim(CLAIM_TEXTS[4], NOT_MEASURED,
                     f"{NOT_MEASURED}: run with data.size=small,large")
    col = "metrics.gap_at_best"
    comp = compare_means(
        sum((reeval_values(sweep, "lstm", c, col) for c in small), []),
        sum((reeval_values(sweep, "gru", c, col) for c in small), []),
        int(rcfg["bootstrap_resamples"]), int(rcfg["seed"]),
    )
    v, e = lower_is_better_verdict(comp, alpha, claim_lower="gru")
    return Claim(CLAIM_TEXTS[4], v, f"generalisation gap (val - train loss) at the best epoch "
                 f"on small data, GRU - LSTM: {e}")
