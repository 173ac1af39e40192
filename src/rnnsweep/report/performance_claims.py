"""Claims 5 and 6 (overfitting, comparable) and what the behavioural claims share
(claim 4, long range, is in long_range_claim).

Each builder returns a Claim decided at the unadjusted alpha, with `p_value` and `decide` so
that claims.apply_holm can re-decide it at its Holm level. Every verdict reads the interval
it prints: supported when the interval lies on the claim's side, contradicted only when it
excludes the claim, equivalent when it lies within the claim's stated margin, inconclusive
otherwise (with the minimum detectable effect and the seeds per cell that would decide it).
Only conditions where both cells learned count (unlearned_note); with none left the verdict
is "no answer", since the numbers would then be about the trivial predictor or the step
budget, not the cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rnnsweep.report.claim_types import ARTICLE, Claim, Pair, Verdict
from rnnsweep.report.curves import curve_points, slope_difference_terms
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.sequential import seeds_to_decide
from rnnsweep.report.settings import Band, Settings
from rnnsweep.report.stats import (
    Comparison,
    Contrast,
    compare_means,
    compare_paired,
    contrast,
    level_text,
    outside_margin_p,
    tost_p,
)


def _pct(alpha: float) -> str:
    return level_text(1 - alpha)


def sided_verdict(low: float, high: float) -> str:
    """The claim says the contrast is positive."""
    if low > 0:
        return Verdict.SUPPORTED
    if high < 0:
        return Verdict.CONTRADICTED
    return Verdict.INCONCLUSIVE


def undecided_note(verdict: str, c: Contrast, alpha: float, s: Settings, label: str = ""
                   ) -> tuple[float | None, str]:
    """For an inconclusive verdict: the minimum detectable effect and the evidence's closing
    note ("; <label>undecided: ..."); (None, "") for any other verdict."""
    if verdict != Verdict.INCONCLUSIVE:
        return None, ""
    mde = c.mde(alpha, s.power)
    n = seeds_to_decide(c, abs(c.estimate), alpha, s.power, s.max_seeds)
    need = (f"about {n} seeds per cell would detect the observed effect" if n else
            f"the observed effect is too small to detect with {s.max_seeds} seeds per cell")
    return mde, (f"; {label}undecided: detectable at {s.power:.0%} power from |effect| >= "
                 f"{mde:.3g}; {need}")


# -- LSTM and GRU perform comparably -----------------------------------------------------

def learned(ev: Evidence, cell: str, cond: str, s: Settings) -> bool | None:
    """Whether a cell's re-evaluated mean beat the trivial predictor by trivial_fraction;
    None when nothing finished or the trivial value is not recorded."""
    v = ev.values(cell, cond, s.test_col)
    if not v:
        return None
    return s.learned(float(np.mean(v)), ev.baseline(cond), ev.baseline(cond, "baseline_acc"))


def learned_seeds(ev: Evidence, cell: str, cond: str, s: Settings) -> set[tuple[str, str]]:
    """The cell's seeds (Evidence.keyed keys) that beat the trivial predictor by
    trivial_fraction; every seed when the trivial value is not recorded."""
    losses = ev.keyed(cell, cond, s.test_col)
    base, acc = ev.baseline(cond), ev.baseline(cond, "baseline_acc")
    return {k for k, v in losses.items() if s.learned(v, base, acc) is not False}


def _not_learned(ev: Evidence, cells: Pair, cond: str, s: Settings) -> list[str]:
    return [c for c in cells if learned(ev, c, cond, s) is False]


def unlearned_note(ev: Evidence, pair: Pair, cond: str, s: Settings) -> str | None:
    """Why a condition leaves a behavioural claim, or None when both cells learned it. Where
    one cell learned and the other did not, the one at the trivial loss may sit on a plateau
    that its step budget ended (the LSTM on adding at T=120 leaves it after about 2,300
    steps at lr 3e-3): a verdict there would be the budget's, not the cells'."""
    failing = _not_learned(ev, pair, cond, s)
    within = f"within {s.trivial_fraction:.0%} of the trivial predictor"
    if len(failing) == 2:
        return f"{cond} left out: neither cell learned it (both {within})"
    if failing:
        other = next(c for c in pair if c not in failing)
        return (f"{cond} left out: {failing[0]} did not learn it ({within}) while {other} did; "
                "a cell at the trivial loss may be on a plateau its step budget ended, so a "
                "verdict there would be the budget's (a longer trainer.max_steps tests it)")
    return None


@dataclass
class _Cond:
    name: str
    comp: Comparison
    band: Band
    note: str


def _unmatched_text(n: int) -> str:
    return f"; {n} seed(s) without a partner in the other cell left out" if n else ""


def _band_text(b: Band) -> str:
    if b.scale == "log":
        return f"band {b.to_ratio(-b.margin):.3g} to {b.to_ratio(b.margin):.3g}"
    return f"margin ±{b.margin:.3g}"


def comparable_claim(ev: Evidence, s: Settings, pair: Pair = ARTICLE) -> Claim:
    """Equivalence within the band in every condition where both cells learned (an
    intersection-union test, Bonferroni over conditions so one interval level serves both
    directions); contradicted when some condition's interval lies beyond the band. A
    condition where a cell did not learn is left out (unlearned_note), and with no other
    condition the verdict is "no answer"."""
    text, ref = pair.texts()[5], "Chung et al. 2014; Greff et al. 2017"
    a_cell, b_cell = pair
    tested: list[_Cond] = []
    notes: list[str] = []
    blocked = False  # a condition that cannot show equivalence blocks 'supported'
    both, unlearned = False, []
    for cond in ev.conditions():
        cells = ev.cells(cond)
        if not set(pair) <= set(cells):
            notes.append(f"{cond} left out (only {', '.join(cells)} measured)")
            continue
        both = True
        a, b = ev.values(a_cell, cond, s.test_col), ev.values(b_cell, cond, s.test_col)
        failed = ev.failed_text(list(pair), cond)
        if min(len(a), len(b)) < 2:
            notes.append(f"{cond}: fewer than two finished seeds per cell ({a_cell} {len(a)}, "
                         f"{b_cell} {len(b)}){failed}")
            blocked = True
            continue
        note = unlearned_note(ev, pair, cond, s)
        if note:
            unlearned.append(cond)
            notes.append(note)
            continue
        matched = ev.paired(pair, cond, s.test_col)
        if matched is not None:
            a, b, unmatched = matched
            failed += _unmatched_text(unmatched)
        band = s.band(a, b, ev.baseline(cond), ev.baseline(cond, "baseline_acc"))
        if isinstance(band, str):
            notes.append(f"{cond}: {band}")
            blocked = True
            continue
        comp = (compare_paired(band.a, band.b, scale=band.scale) if matched is not None else
                compare_means(band.a, band.b, scale=band.scale, df_rule=s.df_rule))
        assert comp is not None and comp.contrast is not None
        tested.append(_Cond(cond, comp, band, failed))
    if not tested:
        if unlearned and not blocked:
            return Claim(text, Verdict.NO_ANSWER, f"{Verdict.NO_ANSWER}: " + "; ".join(notes), ref)
        verdict = Verdict.INCONCLUSIVE if both else Verdict.NOT_MEASURED
        return Claim(text, verdict, "; ".join(notes) or "no condition measured both cells", ref)
    k = len(tested)
    p_eq = 1.0 if blocked else min(1.0, k * max(tost_p(t.comp.contrast, t.band.margin)  # type: ignore[arg-type]
                                                for t in tested))
    p_out = min(1.0, *(k * outside_margin_p(t.comp.contrast, t.band.margin)  # type: ignore[arg-type]
                       for t in tested))

    def decide(alpha: float) -> Claim:
        level = 1 - alpha / k
        verdict = (Verdict.SUPPORTED if p_eq < alpha else
                   Verdict.CONTRADICTED if p_out < alpha else Verdict.INCONCLUSIVE)
        parts = [f"{t.name}: {b_cell}/{a_cell} " if t.band.scale == "log" else f"{t.name}: "
                 for t in tested]
        parts = [f"{head}{t.comp.at(level).text()}, {_band_text(t.band)}{t.note}"
                 for head, t in zip(parts, tested, strict=True)]
        if verdict == Verdict.CONTRADICTED:
            key = min(tested, key=lambda t: outside_margin_p(t.comp.contrast, t.band.margin))  # type: ignore[arg-type]
        else:
            key = max(tested, key=lambda t: tost_p(t.comp.contrast, t.band.margin))  # type: ignore[arg-type]
        c = key.comp.contrast
        assert c is not None
        low, high = c.interval(level)
        mde = None
        scale = "log ratio" if key.band.scale == "log" else "difference"
        evidence = (f"{key.band.quantity} ({b_cell} vs {a_cell}, {scale}) over re-evaluation "
                    f"seeds, equivalent within {s.margin_text()}, intervals at "
                    f"{_pct(alpha / k)} (alpha {alpha:.3g} / {k} conditions){ev.pooled_text()}: "
                    + "; ".join(parts + notes))
        if verdict == Verdict.INCONCLUSIVE:
            mde = c.mde(alpha / k, s.power)
            gap = abs(abs(c.estimate) - key.band.margin)
            n = seeds_to_decide(c, gap, alpha / k, s.power, s.max_seeds)
            evidence += (f"; undecided in {key.name}: " + (
                f"about {n} seeds per cell would decide it" if n else
                "the difference sits at the margin, no feasible seed count decides it"))
        return Claim(text, verdict, evidence, ref, c.estimate, low, high,
                     min(min(t.comp.n_a, t.comp.n_b) for t in tested), mde,
                     min(p_eq, p_out), decide)

    return decide(s.alpha)


# -- LSTM overfits more on small data: an interaction -------------------------------------

def _size_pairs(ev: Evidence) -> list[tuple[str, str]]:
    """(small condition, large condition) that agree on every other data key."""
    conds = set(ev.conditions())
    pairs = []
    for cond in sorted(conds):
        head, _, rest = cond.partition(" ")
        if head == "small" and (" ".join(["large", rest]).strip()) in conds:
            pairs.append((cond, " ".join(["large", rest]).strip()))
    return pairs


def margin_claim(text: str, c: Contrast, margin: float, s: Settings, head: str,
                 tail: Callable[[float], str]) -> Claim:
    """A claim that the contrast c is positive, decided at alpha by its (1 - alpha) interval:
    equivalent when the interval lies within +-margin, else supported / contradicted /
    inconclusive by its side of 0 (both forms of the overfitting claim)."""

    def decide(alpha: float) -> Claim:
        low, high = c.interval(1 - alpha)
        within = -margin < low and high < margin
        verdict = Verdict.EQUIVALENT if within else sided_verdict(low, high)
        p = min(c.p_value(), tost_p(c, margin)) if margin > 0 else c.p_value()
        mde, note = undecided_note(verdict, c, alpha, s)
        evidence = (f"{head} {c.estimate:+.4g} ({_pct(alpha)} CI {low:+.4g} to "
                    f"{high:+.4g}), p={c.p_value():.3g}, tested at alpha={alpha:.3g}; "
                    f"{tail(alpha)}{note}")
        return Claim(text, verdict, evidence, "", c.estimate, low, high, min(c.n), mde, p,
                     decide)

    return decide(s.alpha)


def curve_overfits(ev: Evidence, s: Settings, pair: Pair = ARTICLE) -> Claim | None:
    """With three or more curve sizes (data.size=0.05,0.1,...): the difference of the two
    cells' gap slopes against log n, (second's slope) - (first's slope), averaged over data
    groups; positive when the first cell's overfitting shrinks faster with data, i.e. it
    overfits more on small data. Uses every size, where two sizes give one contrast. Sizes
    where a cell did not learn are left out of both cells' curves. None without such sizes
    (the two-size interaction applies)."""
    text = pair.texts()[4]
    first, second = pair
    terms, notes, gaps, spans = [], [], [], []
    for cells in curve_points(ev, s).values():
        if not set(pair) <= set(cells):
            continue
        unlearned = {p.condition for c in pair for p in cells[c]
                     if _not_learned(ev, pair, p.condition, s)}
        a = [p for p in cells[first] if p.condition not in unlearned]
        b = [p for p in cells[second] if p.condition not in unlearned]
        if unlearned:
            notes.append(f"left out where a cell did not learn: {', '.join(sorted(unlearned))}")
        t = slope_difference_terms(a, b, "gap")
        if t is None:
            continue
        terms.append(t)
        smallest = min(p.n for p in a)
        gaps += [abs(float(p.gap.mean())) for p in a + b if p.n == smallest]
        spans.append(float(np.log(max(p.n for p in a) / smallest)))
    if not terms:
        return None
    groups = [g for t in terms for g in t[0]]
    weights = [w / len(terms) for t in terms for w in t[1]]
    c = contrast(groups, weights, s.df_rule)
    if c is None:
        return None
    # A slope that moves the gap by overfit_margin_fraction of the smallest size's gap over
    # the measured range: "no difference" in the units of the gaps measured.
    margin = s.overfit_margin_fraction * float(np.mean(gaps)) / float(np.mean(spans))
    describe = (f"eval-mode gap's slope against log(training sequences), {second} minus "
                f"{first}, over {len(terms)} data group(s) of >= 3 sizes ({tuned_text(ev)})")

    return margin_claim(text, c, margin, s, f"{describe}:", lambda alpha: (
        f"positive: {first}'s gap shrinks faster with data; equivalent within ±{margin:.3g}; "
        f"{'; '.join(notes) or 'every size learned'}"))


def tuned_text(ev: Evidence) -> str:
    """What each study tuned: with the architecture tuned per study, a gap difference mixes
    the cell with what each search chose; with only the learning rate, the cell is what
    differs (experiment=controlled)."""
    tuned = sorted(ev.sweep.space)
    if set(tuned) <= {"lr"}:
        return "controlled: the same architecture and dropout for every cell and size, only "\
               "the learning rate tuned" + ev.pooled_text()
    # With repeats, each search's choice is one of several: the table "Tuned optimum across
    # independent searches" lists them; the gaps pool all of them.
    return (f"tuned per study: {', '.join(tuned)}, so the gaps mix the cell with what each "
            "search chose; experiment=controlled tunes the learning rate alone"
            + ev.pooled_text())


def overfits_claim(ev: Evidence, s: Settings, pair: Pair = ARTICLE) -> Claim:
    """(eval gap small - eval gap large) for the first cell minus the same for the second,
    averaged over matched pairs of conditions: positive when the first cell's gap grows more
    on small data. Only pairs where both cells learned at both sizes count (a cell that
    learned nothing has a gap that says nothing about overfitting). "Equivalent" when the
    interval lies within +- report.overfit_margin_fraction x the mean small-data gap."""
    text, col = pair.texts()[4], "metrics.gap_at_best"
    first, second = pair
    curve = curve_overfits(ev, s, pair)
    if curve is not None:
        return curve
    pairs = _size_pairs(ev)
    if not pairs:
        return Claim(text, Verdict.NOT_MEASURED,
                     f"{Verdict.NOT_MEASURED}: run with data.size=small,large")
    if col not in ev.reevals.columns:
        return Claim(text, Verdict.NOT_MEASURED, "eval-mode gap (gap_at_best) not recorded by the "
                     "re-evaluation runs")
    groups, weights, notes, kept, unlearned = [], [], [], [], []
    for small, large in pairs:
        cells = {c for cond in (small, large) for c in ev.cells(cond)}
        if not set(pair) <= set(ev.cells(small)) & set(ev.cells(large)):
            notes.append(f"{small}/{large} left out (cells measured: {', '.join(sorted(cells))})")
            continue
        failing = [f"{c} on {cond}" for cond in (small, large)
                   for c in _not_learned(ev, pair, cond, s)]
        if failing:
            unlearned.append(small)
            notes.append(f"{small}/{large} left out: did not learn ({', '.join(failing)}, "
                         f"within {s.trivial_fraction:.0%} of the trivial predictor)")
            continue
        kept.append((small, large))
    if not kept and unlearned:
        return Claim(text, Verdict.NO_ANSWER, f"{Verdict.NO_ANSWER}: " + "; ".join(notes))
    paired_sizes = 0
    for small, large in kept:
        for cond, w in ((small, 1.0), (large, -1.0)):
            # Seed k of both cells shares k's data draw: their gap difference on matched
            # seeds drops what the draw adds to both gaps (Welch over sizes: conservative,
            # since small and large draws of one seed are correlated, not independent).
            # A seed that stayed near the trivial loss has a gap that says nothing about
            # overfitting (about 0, or negative): its pair is left out, counted below.
            learned_both = learned_seeds(ev, first, cond, s) & learned_seeds(ev, second, cond, s)
            matched = ev.paired(pair, cond, col, keep=learned_both)
            if matched is not None:
                groups.append(np.subtract(matched[0], matched[1]))
                weights.append(w / len(kept))
                paired_sizes += 1
                if matched[2]:
                    notes.append(f"{cond}: {_unmatched_text(matched[2]).lstrip('; ')}")
                dropped = len(set(ev.keyed(first, cond, col)) & set(ev.keyed(second, cond, col))
                              - learned_both)
                if dropped:
                    notes.append(f"{cond}: {dropped} seed pair(s) left out where a seed did not "
                                 f"learn (within {s.trivial_fraction:.0%} of the trivial "
                                 "predictor)")
                continue
            # Unpaired: every seed of a sweep without seed tags; with them (too few pairs),
            # each cell's seeds that learned, as the paired form keeps.
            for cell, sign in ((first, 1.0), (second, -1.0)):
                keyed, learned = ev.keyed(cell, cond, col), learned_seeds(ev, cell, cond, s)
                groups.append([v for k, v in keyed.items() if k in learned] if keyed
                              else ev.values(cell, cond, col))
                weights.append(sign * w / len(kept))
    c = contrast([np.asarray(g) for g in groups], weights, s.df_rule) if kept else None
    if c is None:
        counts = ", ".join(f"{len(g)}" for g in groups) or "none"
        return Claim(text, Verdict.INCONCLUSIVE,
                     "fewer than two finished seeds in some cell and size "
                     f"(seeds per group: {counts}); " + "; ".join(notes))
    small_gaps = [abs(float(np.mean(ev.values(cell, small, col))))
                  for small, _ in kept for cell in pair]
    margin = s.overfit_margin_fraction * float(np.mean(small_gaps))

    def details(alpha: float) -> str:
        parts = []
        for small, large in kept:
            for cell in pair:
                d = compare_means(ev.values(cell, large, col), ev.values(cell, small, col),
                                  level=1 - alpha, scale="raw", df_rule=s.df_rule)
                rise = ev.values(cell, small, "metrics.val_rise")
                rise_txt = f", val_rise on small {np.mean(rise):.3g}" if rise else ""
                parts.append(f"{cell} gap small - large ({small} vs {large}): "
                             f"{d.text() if d else 'n/a'}{rise_txt}"
                             f"{ev.failed_text([cell], small)}")
        return "; ".join(parts + notes)

    how = (f"{first} minus {second} paired by seed at each size" if paired_sizes == 2 * len(kept)
           else "unpaired" if not paired_sizes else "paired by seed where both cells had it")
    describe = (f"eval-mode gap at the best validation, (small - large) {first} minus (small - "
                f"large) {second}, {how} ({tuned_text(ev)}):")

    return margin_claim(text, c, margin, s, describe, lambda alpha: (
        f"equivalent within ±{margin:.3g} ({s.overfit_margin_fraction:g} x the mean "
        f"small-data gap {np.mean(small_gaps):.3g}); {details(alpha)}"))
