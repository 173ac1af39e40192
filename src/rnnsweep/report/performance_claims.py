"""Claims 4-6 (long range, overfitting, comparable), each decided by one contrast.

Each builder returns a Claim decided at the unadjusted alpha, with `p_value` and `decide` so
that claims.apply_holm can re-decide it at its Holm level. Every verdict reads the interval
it prints: supported when the interval lies on the claim's side, contradicted only when it
excludes the claim, inconclusive otherwise (with the minimum detectable effect and the seeds
per cell that would decide it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rnnsweep.report.claim_types import (
    CLAIM_TEXTS,
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_MEASURED,
    SUPPORTED,
    Claim,
)
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.sequential import seeds_to_decide
from rnnsweep.report.settings import Settings
from rnnsweep.report.stats import (
    Comparison,
    Contrast,
    compare_means,
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
        return SUPPORTED
    if high < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def _undecided_note(c: Contrast, alpha: float, s: Settings) -> tuple[float, str]:
    mde = c.mde(alpha, s.power)
    n = seeds_to_decide(c, abs(c.estimate), alpha, s.power, s.max_seeds)
    need = (f"about {n} seeds per cell would detect the observed effect" if n else
            f"the observed effect is too small to detect with {s.max_seeds} seeds per cell")
    return mde, f"undecided: detectable at {s.power:.0%} power from |effect| >= {mde:.3g}; {need}"


def contrast_claim(
    text: str, c: Contrast, describe: str, s: Settings, reference: str = "",
    details: Callable[[float], str] | None = None,
) -> Claim:
    """A claim that the contrast c is positive, decided at alpha by its (1 - alpha) interval."""

    def decide(alpha: float) -> Claim:
        low, high = c.interval(1 - alpha)
        verdict = sided_verdict(low, high)
        extra = f"; {details(alpha)}" if details else ""
        evidence = (f"{describe} {c.estimate:+.4g} ({_pct(alpha)} CI {low:+.4g} to {high:+.4g}), "
                    f"p={c.p_value():.3g}, tested at alpha={alpha:.3g}{extra}")
        mde = None
        if verdict == INCONCLUSIVE:
            mde, note = _undecided_note(c, alpha, s)
            evidence += f"; {note}"
        return Claim(text, verdict, evidence, reference, c.estimate, low, high, min(c.n), mde,
                     c.p_value(), decide)

    return decide(s.alpha)


# -- LSTM and GRU perform comparably -----------------------------------------------------

@dataclass
class _Cond:
    name: str
    comp: Comparison
    margin: float | None
    trivial: bool
    note: str


def _at_trivial_level(ev: Evidence, cond: str, s: Settings) -> bool:
    """Both cells within trivial_fraction of the trivial predictor: nothing was learned."""
    means = [np.mean(v) for cell in ("lstm", "gru")
             if (v := ev.values(cell, cond, s.test_col))]
    if len(means) < 2:
        return False
    if s.maximize:
        base = ev.baseline(cond, "baseline_acc")
        return base is not None and all(m <= base + s.trivial_fraction * (1 - base)
                                        for m in means)
    base = ev.baseline(cond, "baseline_loss")
    return base is not None and all(m >= (1 - s.trivial_fraction) * base for m in means)


def comparable_claim(ev: Evidence, s: Settings) -> Claim:
    """Equivalence within the margin in every condition measured with both cells (an
    intersection-union test, Bonferroni over conditions so one interval level serves both
    directions); contradicted when some condition's interval lies beyond the margin."""
    text, ref = CLAIM_TEXTS[5], "Chung et al. 2014; Greff et al. 2017"
    tested: list[_Cond] = []
    notes: list[str] = []
    blocked = False  # a condition that cannot show equivalence blocks 'supported'
    both = False
    for cond in ev.conditions():
        cells = ev.cells(cond)
        if not {"lstm", "gru"} <= set(cells):
            notes.append(f"{cond} left out (only {', '.join(cells)} measured)")
            continue
        both = True
        lstm, gru = ev.values("lstm", cond, s.test_col), ev.values("gru", cond, s.test_col)
        failed = ev.failed_text(["lstm", "gru"], cond)
        comp = compare_means(lstm, gru, scale="raw", df_rule=s.df_rule)
        if comp is None:
            notes.append(f"{cond}: fewer than two finished seeds per cell (lstm {len(lstm)}, "
                         f"gru {len(gru)}){failed}")
            blocked = True
            continue
        margin = s.margin(ev.baseline(cond), ev.baseline(cond, "baseline_acc"))
        if margin is None:
            notes.append(f"{cond}: margin {s.margin_text()} needs metrics.baseline_"
                         f"{'acc' if s.maximize else 'loss'} (not recorded); or set "
                         "report.margin_kind=absolute")
            blocked = True
        trivial = _at_trivial_level(ev, cond, s)
        tested.append(_Cond(cond, comp, margin, trivial, failed))
    with_margin = [t for t in tested if t.margin is not None]
    informative = [t for t in with_margin if not t.trivial]
    if not tested:
        verdict = INCONCLUSIVE if both else NOT_MEASURED
        return Claim(text, verdict, "; ".join(notes) or "no condition measured both cells", ref)
    k = max(len(with_margin), 1)
    p_eq = 1.0 if blocked or not informative else \
        min(1.0, k * max(tost_p(t.comp.contrast, t.margin) for t in informative))  # type: ignore[arg-type]
    p_out = min([1.0, *(k * outside_margin_p(t.comp.contrast, t.margin)  # type: ignore[arg-type]
                        for t in with_margin)])

    def decide(alpha: float) -> Claim:
        level = 1 - alpha / k
        verdict = SUPPORTED if p_eq < alpha else CONTRADICTED if p_out < alpha else INCONCLUSIVE
        parts = []
        for t in tested:
            m = "margin not recorded" if t.margin is None else f"margin ±{t.margin:.3g}"
            flag = (" — both cells at the trivial predictor's level: not evidence that they "
                    "perform comparably" if t.trivial else "")
            parts.append(f"{t.name}: {t.comp.at(level).text()}, {m}{flag}{t.note}")
        if verdict == CONTRADICTED:
            key = min(with_margin, key=lambda t: outside_margin_p(t.comp.contrast, t.margin))  # type: ignore[arg-type]
        else:
            pool = informative or with_margin or tested
            key = max(pool, key=lambda t: tost_p(t.comp.contrast, t.margin)  # type: ignore[arg-type]
                      if t.margin is not None else 1.0)
        c = key.comp.contrast
        assert c is not None
        low, high = c.interval(level)
        mde = None
        evidence = (f"{s.test_metric} (GRU - LSTM) over re-evaluation seeds, margin "
                    f"{s.margin_text()}, intervals at {_pct(alpha / k)} (alpha {alpha:.3g} / "
                    f"{k} conditions): " + "; ".join(parts + notes))
        if verdict == INCONCLUSIVE:
            mde = c.mde(alpha / k, s.power)
            if key.margin is not None:
                gap = abs(abs(c.estimate) - key.margin)
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


def overfits_claim(ev: Evidence, s: Settings) -> Claim:
    """(eval gap small - eval gap large) for LSTM minus the same for GRU, averaged over
    matched pairs of conditions: positive when the LSTM's gap grows more on small data."""
    text, col = CLAIM_TEXTS[4], "metrics.gap_at_best"
    pairs = _size_pairs(ev)
    if not pairs:
        return Claim(text, NOT_MEASURED, f"{NOT_MEASURED}: run with data.size=small,large")
    if col not in ev.reevals.columns:
        return Claim(text, NOT_MEASURED, "eval-mode gap (gap_at_best) not recorded by the "
                     "re-evaluation runs")
    groups, weights, notes, kept = [], [], [], []
    for small, large in pairs:
        cells = {c for cond in (small, large) for c in ev.cells(cond)}
        if not {"lstm", "gru"} <= set(ev.cells(small)) & set(ev.cells(large)):
            notes.append(f"{small}/{large} left out (cells measured: {', '.join(sorted(cells))})")
            continue
        kept.append((small, large))
    for small, large in kept:
        for cell, sign in (("lstm", 1.0), ("gru", -1.0)):
            for cond, w in ((small, 1.0), (large, -1.0)):
                groups.append(ev.values(cell, cond, col))
                weights.append(sign * w / len(kept))
    c = contrast([np.asarray(g) for g in groups], weights, s.df_rule) if kept else None
    if c is None:
        counts = ", ".join(f"{len(g)}" for g in groups) or "none"
        return Claim(text, INCONCLUSIVE, "fewer than two finished seeds in some cell and size "
                     f"(seeds per group: {counts}); " + "; ".join(notes))

    def details(alpha: float) -> str:
        parts = []
        for small, large in kept:
            for cell in ("lstm", "gru"):
                d = compare_means(ev.values(cell, large, col), ev.values(cell, small, col),
                                  level=1 - alpha, scale="raw", df_rule=s.df_rule)
                rise = ev.values(cell, small, "metrics.val_rise")
                rise_txt = f", val_rise on small {np.mean(rise):.3g}" if rise else ""
                parts.append(f"{cell} gap small - large ({small} vs {large}): "
                             f"{d.text() if d else 'n/a'}{rise_txt}"
                             f"{ev.failed_text([cell], small)}")
        return "; ".join(parts + notes)

    return contrast_claim(text, c, "eval-mode gap at the best validation, (small - large) "
                          "LSTM minus (small - large) GRU:", s, details=details)


# -- LSTM captures long-range dependencies better: a trend over lengths -------------------

def _length_axis(ev: Evidence, s: Settings) -> str | None:
    axes = [a for a in ev.sweep.axes if a.removeprefix("tags.data.") in s.length_keys]
    return axes[0] if axes else None


def long_range_claim(ev: Evidence, s: Settings) -> Claim:
    """Per data size, the least-squares slope of the LSTM's advantage (log GRU/LSTM for a
    loss, LSTM - GRU for an accuracy) against log2(length); the claim is the mean slope over
    sizes being positive: the advantage must grow with length, not merely exist."""
    text, ref = CLAIM_TEXTS[3], "Weiss et al. 2018"
    axis = _length_axis(ev, s)
    if axis is None:
        tasks = set(ev.parents.get("tags.task", []))
        if tasks == {"adding"}:  # the task whose length is a config key
            how = ("measure it with `python train.py -m cell=lstm,gru "
                   "data.seq_len=25,50,100,200,400`")
        else:  # a file or a corpus fixes its lengths
            how = ("this task's sequences have the lengths of its data; compare lengths with "
                   "one sweep per data set of a given length (e.g. data.path=<file> per length)")
        return Claim(text, NOT_MEASURED, f"{NOT_MEASURED}: the sweep has one sequence length; "
                     + how, ref)
    key = axis.removeprefix("tags.data.")
    ps = ev.parents
    raw = {cond: [np.asarray(ev.values(c, cond, s.test_col)) for c in ("lstm", "gru")]
           for cond in ev.conditions()}
    # One scale for every length: logs only when every value is positive.
    log = s.effect_scale() != "raw" and all((v > 0).all() for pair in raw.values() for v in pair)
    per_size: dict[str, list[tuple[float, np.ndarray, np.ndarray]]] = {}
    notes = []
    for cond, (lstm, gru) in raw.items():
        rows = ps[ps["condition"] == cond]
        size, length = str(rows["tags.data_size"].iloc[0]), float(rows[axis].iloc[0])
        if log:
            lstm, gru = np.log(lstm), np.log(gru)
        if min(lstm.size, gru.size) < 2:
            notes.append(f"{cond} left out (finished seeds lstm {lstm.size}, gru {gru.size})"
                         f"{ev.failed_text(['lstm', 'gru'], cond)}")
            continue
        per_size.setdefault(size, []).append((length, lstm, gru))
    sizes = {k: v for k, v in per_size.items() if len({x[0] for x in v}) >= 2}
    if not sizes:
        return Claim(text, INCONCLUSIVE, f"fewer than two lengths with two finished seeds per "
                     f"cell in any data size; {'; '.join(notes)}", ref)

    def slope_groups(items: list, scale: float) -> tuple[list, list]:
        x = np.log2([it[0] for it in items])
        cx = (x - x.mean()) / np.sum((x - x.mean()) ** 2)
        groups, weights = [], []
        for w, (_, lstm, gru) in zip(cx, items, strict=True):
            adv = (gru, lstm) if not s.maximize else (lstm, gru)  # advantage = first - second
            groups += list(adv)
            weights += [w * scale, -w * scale]
        return groups, weights

    all_g, all_w = [], []
    for items in sizes.values():
        g, w = slope_groups(items, 1 / len(sizes))
        all_g += g
        all_w += w
    c = contrast(all_g, all_w, s.df_rule)
    assert c is not None
    unit = "log(GRU/LSTM)" if log and not s.maximize else f"{s.test_metric} LSTM - GRU"

    def details(alpha: float) -> str:
        parts = []
        for size, items in sorted(sizes.items()):
            cs = contrast(*slope_groups(items, 1.0), s.df_rule)
            lo, hi = cs.interval(1 - alpha)  # type: ignore[union-attr]
            per_len = ", ".join(
                f"{key}={int(length)}: {np.exp(gru.mean() - lstm.mean()):.3g}x"
                if log and not s.maximize else f"{key}={int(length)}: "
                f"{lstm.mean() - gru.mean():+.3g}" for length, lstm, gru in sorted(items, key=lambda
                                                                                  t: t[0]))
            parts.append(f"{size}: slope {cs.estimate:+.3g} ({lo:+.3g} to {hi:+.3g}); "  # type: ignore[union-attr]
                         f"{'GRU/LSTM' if log and not s.maximize else 'LSTM - GRU'} {per_len}")
        return "; ".join(parts + notes)

    return contrast_claim(text, c, f"change of the LSTM's advantage ({unit}) per doubling of "
                          f"{key}, mean over {len(sizes)} data size(s):", s, ref, details)
