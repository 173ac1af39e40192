"""Claim 4, "LSTM captures long-range dependencies better": an advantage that is real where
sequences are longest and grows with their length, over lengths where the cells learned."""

from __future__ import annotations

import numpy as np

from rnnsweep.report.claim_types import ARTICLE, Claim, Pair, Verdict
from rnnsweep.report.curves import slope_weights
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.performance_claims import _pct, undecided_note, unlearned_note
from rnnsweep.report.settings import Settings
from rnnsweep.report.stats import Contrast, contrast


def _length_axis(ev: Evidence, s: Settings) -> str | None:
    axes = [a for a in ev.sweep.axes if a.removeprefix("tags.data.") in s.length_keys]
    return axes[0] if axes else None


def long_range_claim(ev: Evidence, s: Settings, pair: Pair = ARTICLE) -> Claim:
    """The first cell's advantage A (log second/first for a loss, first - second for an
    accuracy) must be real where the sequences are longest and grow with length.

    Per data size, only lengths where both cells learned count (unlearned_note: where one
    did not, its trivial loss may be a plateau the budget ended). Supported only when both
    the mean least-squares slope of A against log2(length) and A at the longest remaining
    length lie above 0 at alpha (an intersection-union test); contradicted when either lies
    below 0 at alpha / 2 (a union, Bonferroni); a slope alone is never enough: a growing
    advantage that stays negative is the second cell winning by less."""
    text, ref = pair.texts()[3], "Weiss et al. 2018"
    first, second = pair
    axis = _length_axis(ev, s)
    if axis is None:
        tasks = set(ev.parents.get("tags.task", []))
        if tasks == {"adding"}:  # the task whose length is a config key
            how = ("measure it with `python train.py -m cell=lstm,gru "
                   "data.seq_len=25,50,100,200,400`")
        else:  # a file or a corpus fixes its lengths
            how = ("this task's sequences have the lengths of its data; compare lengths with "
                   "one sweep per data set of a given length (e.g. data.path=<file> per length)")
        return Claim(text, Verdict.NOT_MEASURED,
                     f"{Verdict.NOT_MEASURED}: the sweep has one sequence length; " + how, ref)
    key = axis.removeprefix("tags.data.")
    ps = ev.parents
    raw = {cond: [np.asarray(ev.values(c, cond, s.test_col)) for c in pair]
           for cond in ev.conditions()}
    # One scale for every length: logs only when every value is positive.
    log = s.effect_scale() != "raw" and all((v > 0).all() for vals in raw.values()
                                            for v in vals)
    per_size: dict[str, list[tuple[float, np.ndarray, np.ndarray]]] = {}
    notes: list[str] = []
    for cond, (a, b) in raw.items():
        rows = ps[ps["condition"] == cond]
        size, length = str(rows["tags.data_size"].iloc[0]), float(rows[axis].iloc[0])
        if min(a.size, b.size) < 2:
            notes.append(f"{cond} left out (finished seeds {first} {a.size}, {second} "
                         f"{b.size}){ev.failed_text(list(pair), cond)}")
            continue
        note = unlearned_note(ev, pair, cond, s)
        if note:
            notes.append(note)
            continue
        # Seed k of both cells shares k's data draw: the advantage pairs by seed when both
        # cells have at least two seeds in common.
        matched = ev.paired(pair, cond, s.test_col)
        if matched is not None:
            a, b = np.asarray(matched[0]), np.asarray(matched[1])
            if matched[2]:
                notes.append(f"{cond}: {matched[2]} seed(s) without a partner left out")
        per_size.setdefault(size, []).append((length, *((np.log(a), np.log(b)) if log
                                                         else (a, b)), matched is not None))
    sizes: dict[str, list] = {}
    for size, items in per_size.items():
        if len(items) < 2:
            notes.append(f"{size}: fewer than two lengths where both cells learned")
        else:
            sizes[size] = sorted(items, key=lambda t: t[0])
    if not sizes:
        return Claim(text, Verdict.NO_ANSWER, f"{Verdict.NO_ANSWER}: {'; '.join(notes)}", ref)

    def advantage(lstm: np.ndarray, gru: np.ndarray, paired: bool) -> tuple[list, list]:
        better, worse = (gru, lstm) if not s.maximize else (lstm, gru)
        return ([better - worse], [1.0]) if paired else ([better, worse], [1.0, -1.0])

    def slope_groups(items: list, scale: float) -> tuple[list, list]:
        x = np.log2([it[0] for it in items])
        cx = slope_weights(x)
        groups, weights = [], []
        for w, (_, a, b, paired) in zip(cx, items, strict=True):
            g, sign = advantage(a, b, paired)
            groups += g
            weights += [w * scale * sg for sg in sign]
        return groups, weights

    def mean_contrast(build) -> Contrast:  # noqa: ANN001 - (items, scale) -> groups, weights
        all_g, all_w = [], []
        for items in sizes.values():
            g, w = build(items, 1 / len(sizes))
            all_g += g
            all_w += w
        c = contrast(all_g, all_w, s.df_rule)
        assert c is not None
        return c

    slope = mean_contrast(slope_groups)
    end = mean_contrast(lambda items, sc: (
        (g := advantage(*items[-1][1:]))[0], [sc * w for w in g[1]]))
    unit = f"log({second}/{first})" if log and not s.maximize else \
        f"{s.test_metric} {first} - {second}"
    if any(it[3] for items in sizes.values() for it in items):
        unit += ", paired by seed where both cells had it"

    def details(alpha: float) -> str:
        parts = []
        for size, items in sorted(sizes.items()):
            cs = contrast(*slope_groups(items, 1.0), s.df_rule)
            lo, hi = cs.interval(1 - alpha)  # type: ignore[union-attr]
            per_len = ", ".join(
                f"{key}={int(length)}: {np.exp(b.mean() - a.mean()):.3g}x"
                if log and not s.maximize else f"{key}={int(length)}: "
                f"{a.mean() - b.mean():+.3g}" for length, a, b, _ in items)
            what = f"{second}/{first}" if log and not s.maximize else f"{first} - {second}"
            parts.append(f"{size}: slope {cs.estimate:+.3g} ({lo:+.3g} to {hi:+.3g}); "  # type: ignore[union-attr]
                         f"{what} {per_len}")
        return "; ".join(parts + notes)

    def decide(alpha: float) -> Claim:
        s_lo, s_hi = slope.interval(1 - alpha)
        e_lo, e_hi = end.interval(1 - alpha)
        if s_lo > 0 and e_lo > 0:
            verdict = Verdict.SUPPORTED
        elif slope.interval(1 - alpha / 2)[1] < 0 or end.interval(1 - alpha / 2)[1] < 0:
            verdict = Verdict.CONTRADICTED
        else:
            verdict = Verdict.INCONCLUSIVE
        evidence = (f"{first}'s advantage ({unit}) per doubling of {key}, mean over "
                    f"{len(sizes)} data size(s): {slope.estimate:+.4g} ({_pct(alpha)} CI "
                    f"{s_lo:+.4g} to {s_hi:+.4g}); at the longest {key} where both cells learned: "
                    f"{end.estimate:+.4g} ({_pct(alpha)} CI {e_lo:+.4g} to {e_hi:+.4g}); "
                    f"supported only when both lie above 0, tested at alpha={alpha:.3g}; "
                    f"{details(alpha)}")
        mde, note = undecided_note(verdict, slope, alpha, s, label="slope ")
        evidence += note
        p = max(slope.p_value(), end.p_value())
        return Claim(text, verdict, evidence, ref, slope.estimate, s_lo, s_hi,
                     min(min(slope.n), min(end.n)), mde, p, decide)

    return decide(s.alpha)
