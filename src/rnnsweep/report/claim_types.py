"""What a claim's verdict is: the words, the six claims, and one row of the claims table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
NOT_MEASURED = "not measured by this sweep"
# Decided, but neither way: the interval lies within the claim's stated margin of no effect.
EQUIVALENT = "equivalent: no difference beyond the margin"
# Measured, but where the cells did not learn: the numbers cannot speak to the claim.
NO_ANSWER = "no answer"


@dataclass
class Claim:
    """One row of the claims table; the numbers are also written to metrics.json.

    effect / ci_low / ci_high: the claim's effect and its interval (units in `evidence`);
    n_seeds: seeds per cell behind it; mde: the minimum detectable effect when undecided.
    p_value / decide: a claim decided by a test joins the Holm family of the claims table
    (claims.apply_holm): p_value is its unadjusted p, decide(alpha_i) returns the claim
    decided at Holm's level alpha_i, with its interval at 1 - alpha_i.
    """

    claim: str
    verdict: str
    evidence: str
    reference: str = ""
    effect: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n_seeds: int | None = None
    mde: float | None = None
    p_value: float | None = None
    decide: Callable[[float], Claim] | None = field(default=None, repr=False, compare=False)


CLAIM_TEXTS = (
    "GRU has fewer parameters",
    "GRU trains faster",
    "GRU uses less memory",
    "LSTM captures long-range dependencies better",
    "LSTM overfits more on small data",
    "LSTM and GRU perform comparably",
)
