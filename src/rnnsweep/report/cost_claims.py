"""The cost claims: GRU has fewer parameters, trains faster, uses less memory."""

from __future__ import annotations

from rnnsweep.report.claim_types import CLAIM_TEXTS, NOT_MEASURED, Claim
from rnnsweep.report.collect import Sweep


def cost_claims(sweep: Sweep, rcfg: dict) -> list[Claim]:
    # Imported here: claims.py imports this module.
    from rnnsweep.report.claims import (
        device_text,
        fewer_params_verdict,
        identical_pairs,
        mean_epoch_seconds,
        ratio_verdict,
    )
    from rnnsweep.report.stats import paired_ratio

    alpha = float(rcfg["alpha"])
    matched = bool(sweep.parents["tags.study_name"].str.endswith("-matched").all())
    claims = []
    if matched:
        claims.append(Claim(CLAIM_TEXTS[0], NOT_MEASURED,
                            "parameter-matched sweep: cells have equal parameter counts by "
                            "design; run with search.match_params=false", "Chung et al. 2014"))
    else:
        v, e = fewer_params_verdict(*identical_pairs(sweep, "metrics.n_params"))
        claims.append(Claim(CLAIM_TEXTS[0], v, e, "references: GRU/LSTM = 3/4 at equal sizes"))
    device = "; ".join(sorted({device_text(r) for _, r in sweep.parents.iterrows()}))
    mean_epoch_seconds(sweep)
    v, e = ratio_verdict(paired_ratio(*identical_pairs(sweep, "epoch_seconds_mean")), alpha)
    claims.append(Claim(CLAIM_TEXTS[1], v, f"{e}; seconds/epoch on {device}",
                        "DeepBench (GPU) 0.69-0.80; CPU note in references"))
    v, e = ratio_verdict(paired_ratio(*identical_pairs(sweep, "metrics.peak_memory_bytes")),
                         alpha)
    claims.append(Claim(CLAIM_TEXTS[2], v, f"{e}; peak training memory on {device}"))
    return claims
