"""The claims table: one verdict per claim of each pair of cells, with the numbers behind it.

Claims 1-3 (cost) come from cost_claims, claim 4 from long_range_claim, claims 5-6 from
performance_claims. Every claim
decided by a test carries its p-value and a `decide(alpha)`; `apply_holm` then re-decides the
family at Holm's levels, so six claims at alpha = 0.05 keep a 5 % family-wise error rate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnsweep.report.claim_types import Claim, Pair, Verdict, claim_pairs
from rnnsweep.report.collect import Sweep
from rnnsweep.report.cost_claims import cost_claims
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.long_range_claim import long_range_claim
from rnnsweep.report.performance_claims import comparable_claim, overfits_claim
from rnnsweep.report.settings import Settings
from rnnsweep.report.stats import holm_levels

__all__ = ["apply_holm", "build_claims", "device_text", "mean_epoch_seconds",
           "verdict_from_test"]


def verdict_from_test(favours_claim: bool, p_value: float, alpha: float) -> str:
    """Significant in the claimed direction: supported; significant against it: contradicted."""
    if p_value >= alpha:
        return Verdict.INCONCLUSIVE
    return Verdict.SUPPORTED if favours_claim else Verdict.CONTRADICTED


def apply_holm(claims: list[Claim], alpha: float) -> list[Claim]:
    """Re-decide every claim that carries a test at its Holm level; others stay as they are."""
    tested = [i for i, c in enumerate(claims) if c.decide is not None
              and c.p_value is not None and np.isfinite(c.p_value)]
    levels = holm_levels([float(claims[i].p_value) for i in tested], alpha)  # type: ignore[arg-type]
    out = list(claims)
    for i, level in zip(tested, levels, strict=True):
        decided = claims[i].decide(level)  # type: ignore[misc]
        decided.evidence += f" [Holm over {len(tested)} tested claims: alpha {level:.3g}]"
        out[i] = decided
    return out


# -- extraction helpers ------------------------------------------------------------------

def mean_epoch_seconds(sweep: Sweep) -> None:
    """Trials pruned early have no final seconds_per_epoch; their epochs still count."""
    sweep.trials["epoch_seconds_mean"] = [
        float(np.mean([v for _, v in sweep.curves[r].get("epoch_seconds", [])]))
        if sweep.curves.get(r, {}).get("epoch_seconds") else np.nan
        for r in sweep.trials["run_id"]
    ] if "run_id" in sweep.trials else []


def device_text(parent: pd.Series) -> str:
    backend = parent.get("tags.backend")
    if not isinstance(backend, str):
        return f"{parent['tags.cell']}: device not recorded"
    return f"{parent['tags.cell']}: {parent.get('tags.device')} / {backend}"


def build_claims(sweep: Sweep, rcfg: dict) -> list[Claim]:
    """The six claims for each pair of cells compared (claim_types.claim_pairs: the article's
    LSTM and GRU when the sweep ran both), Holm-corrected across all claims decided by a
    test."""
    s = Settings.from_cfg(rcfg)
    pairs = claim_pairs(list(set(sweep.parents["tags.cell"])), s.article_pair)
    if not pairs:
        first, second = s.article_pair
        note = (f"{Verdict.NOT_MEASURED}; run two cells, e.g. "
                f"`python train.py -m cell={first},{second}`")
        return [Claim(c, Verdict.NOT_MEASURED, note) for c in
                Pair(first, second, article=True).texts()]
    ev = Evidence(sweep)
    cost = cost_claims(sweep, rcfg, pairs)
    claims: list[Claim] = []
    for i, pair in enumerate(pairs):
        claims += cost[3 * i:3 * i + 3]
        claims += [long_range_claim(ev, s, pair), overfits_claim(ev, s, pair),
                   comparable_claim(ev, s, pair)]
    return apply_holm(claims, s.alpha)
