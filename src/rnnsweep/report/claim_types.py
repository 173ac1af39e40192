"""What a claim's verdict is: the words, the six claims, and one row of the claims table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    """A claim's verdict, as the claims table prints it (a str: compares, formats and
    serialises as its words)."""

    SUPPORTED = "supported"
    CONTRADICTED = "contradicted"
    INCONCLUSIVE = "inconclusive"
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


def display(cell: str) -> str:
    """A cell's name as a claim prints it: short acronyms upper-case (lstm -> LSTM)."""
    return cell.upper() if cell.isalpha() and len(cell) <= 4 else cell


@dataclass(frozen=True)
class Pair:
    """Two cells the claims compare. `first` is the cell the article credits with capacity
    (long range, overfitting: the LSTM), `second` the cheaper one (the GRU). `article`: the
    pair of report.article_pair, whose claims read as the article wrote them; any other pair
    names both cells in every claim ("minGRU trains faster than GRU")."""

    first: str
    second: str
    article: bool = False

    def __iter__(self) -> Iterator[str]:  # unpacks as (first, second)
        return iter((self.first, self.second))

    def texts(self) -> tuple[str, ...]:
        a, b = display(self.first), display(self.second)
        than_a, than_b = ("", "") if self.article else (f" than {a}", f" than {b}")
        return (
            f"{b} has fewer parameters{than_a}",
            f"{b} trains faster{than_a}",
            f"{b} uses less memory{than_a}",
            f"{a} captures long-range dependencies better{than_b}",
            f"{a} overfits more on small data{than_b}",
            f"{a} and {b} perform comparably",
        )

    def ratio(self) -> str:
        """How ratios of the pair print: second over first (GRU/LSTM)."""
        return f"{display(self.second)}/{display(self.first)}"


def claim_pairs(cells: list[str], article_pair: list[str] | tuple[str, ...]) -> list[Pair]:
    """The pairs a sweep's claims compare: the article's pair when the sweep ran both of its
    cells (other cells stand beside them in the tables), else every pair of the sweep's
    cells in name order."""
    first, second = article_pair
    if first in cells and second in cells:
        return [Pair(first, second, article=True)]
    names = sorted(set(cells))
    return [Pair(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


ARTICLE = Pair("lstm", "gru", article=True)  # report.article_pair's default (conf/report)
CLAIM_TEXTS = ARTICLE.texts()
