"""The report's opening answer: per data condition, which cell, how sure, at what cost, and
what would change the answer; or plainly that no answer is possible.

It uses the same re-evaluation seeds and tests as the claims, Bonferroni-corrected over
every comparison it makes, so it is never stronger than the tests beneath it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnsweep.data.fitted_baselines import LABELS, MODELS, best_fitted, fitted_key
from rnnsweep.losses import headline_metric
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.performance_claims import learned
from rnnsweep.report.sequential import seeds_to_decide
from rnnsweep.report.settings import Settings
from rnnsweep.report.stats import Comparison, compare_means, compare_paired, level_text, tost_p
from rnnsweep.report.tables import fmt

COLUMNS = ["data", "answer", "how sure", "at what cost", "what would change it"]


def _center(values: list[float], log: bool) -> float:
    v = np.asarray(values, float)
    return float(np.exp(np.log(v).mean())) if log else float(v.mean())


def _effect_text(best: str, other: str, c: Comparison, s: Settings) -> str:
    pct = level_text(c.level)
    n = f"{c.n_b} seeds paired" if c.test.startswith("paired") else f"n={c.n_b}/{c.n_a}"
    if c.scale == "log":  # c compares best (b) against other (a)
        return (f"{best}/{other} {s.test_metric} ratio {np.exp(c.diff):.3g} ({pct} CI "
                f"{np.exp(c.ci_low):.3g}-{np.exp(c.ci_high):.3g}, {n})")
    return (f"{best} - {other} {s.test_metric} {c.diff:+.4g} ({pct} CI {c.ci_low:+.4g} to "
            f"{c.ci_high:+.4g}, {n})")


def _compare(a: list[float], b: list[float], scale: str, level: float, paired: bool,
             s: Settings) -> Comparison | None:
    return (compare_paired(a, b, level=level, scale=scale) if paired else
            compare_means(a, b, level=level, scale=scale, df_rule=s.df_rule))


def _cost_and_changes(summ: pd.DataFrame, cond: str, cells: list[str]
                      ) -> tuple[str, list[str]]:
    """Each cell's size and speed at its best configuration, and what in its search or
    seeds would change the answer (from the summary table)."""
    parts, out = [], []
    for cell in cells:
        row = summ[(summ["cell"] == cell) & (summ["condition"] == cond)]
        if row.empty:
            continue
        r = row.iloc[0]
        step = r.get("seconds_per_step")
        speed = (f", {1000 * step:.3g} ms/step" if isinstance(step, float) and np.isfinite(step)
                 else "")
        parts.append(f"{cell} {fmt(r.get('n_params'))} params{speed}")
        conv = r.get("converged")
        if isinstance(conv, (bool, np.bool_)) and not conv:
            out.append(f"{cell}: best trial still improving in the last 10 % of its step budget "
                       f"({r['converged_hint']})")
        # Per search: k independent searches (search.repeats) are k short searches, not one
        # long one, and the summary's counts are their sums.
        searches = int(r.get("searches", 1) or 1)
        per_search = r.get("complete", 0) / searches
        if per_search < 10:
            each = "" if searches == 1 else " per search"
            out.append(f"{cell}: only {per_search:g} complete trials{each} (search.n_trials)")
        if r.get("reeval_failed", 0):
            out.append(f"{cell}: {r['reeval_failed']} failed re-evaluation seed(s) left out")
    cost = "; ".join(parts) + " (best configurations; controlled cost in claims 1-3)" \
        if parts else "not recorded"
    return cost, out


def bottom_line(ev: Evidence, s: Settings, summ: pd.DataFrame) -> pd.DataFrame:
    """One row per condition (see COLUMNS)."""
    log = s.effect_scale() != "raw"
    plans: dict[str, tuple[list[str], dict[str, list[float]]]] = {}
    n_tests = 0
    for cond in ev.conditions():
        vals = {c: ev.values(c, cond, s.test_col) for c in ev.cells(cond)}
        ok = [c for c, v in vals.items() if len(v) >= 2]
        plans[cond] = (ok, vals)
        n_tests += max(len(ok) - 1, 0)
    alpha = s.alpha / max(n_tests, 1)
    rows = []
    for cond, (ok, vals) in plans.items():
        cells = sorted(vals)
        short = [f"{c} ({len(v)})" for c, v in vals.items() if len(v) < 2]
        cost, changes = _cost_and_changes(summ, cond, cells)
        acc = _accuracy(ev, cond, cells)
        note = fitted_note(ev, s, cond, cells)
        if len(ok) < 2:
            rows.append([cond, _with("no answer: fewer than two finished re-evaluation "
                                     f"seeds for {', '.join(short) or 'a second cell'}", note),
                         acc or "-", cost,
                         "; ".join(["more seeds (search.reeval_seeds)", *changes])])
            continue
        use_log = log and all(min(vals[c]) > 0 for c in ok)
        centers = {c: _center(vals[c], use_log) for c in ok}
        order = sorted(ok, key=lambda c: centers[c], reverse=s.maximize)
        if all(learned(ev, c, cond, s) is False for c in ok):
            base = "majority-class rate" if s.maximize else "trivial predictor's loss"
            rows.append([cond, _with(f"no answer: every cell is within "
                                     f"{s.trivial_fraction:.0%} of the {base}, so none "
                                     "learned the task", note),
                         acc or "-", cost,
                         "; ".join(["a longer budget, more data or a learnable task",
                                    *changes])])
            continue
        best, sure, undecided, equal = order[0], [], [], []
        for other in order[1:]:
            # paired by seed where both cells have the seeds, as the claims compare them
            matched = ev.paired((other, best), cond, s.test_col)
            a, b = (matched[0], matched[1]) if matched else (vals[other], vals[best])
            c = _compare(a, b, "log" if use_log else "raw", 1 - alpha, bool(matched), s)
            assert c is not None and c.contrast is not None
            sure.append(_effect_text(best, other, c, s))
            band = s.band(a, b, ev.baseline(cond), ev.baseline(cond, "baseline_acc"))
            eq = None if isinstance(band, str) else _compare(band.a, band.b, band.scale,
                                                             1 - alpha, bool(matched), s)
            within = eq is not None and tost_p(eq.contrast, band.margin) < alpha  # type: ignore[arg-type, union-attr]
            if within:
                sure.append(f"{band.quantity} {eq.text()} within {s.margin_text()}")  # type: ignore[union-attr]
            if c.p_value < alpha:
                continue
            if within:
                equal.append(other)
            else:
                n = seeds_to_decide(c.contrast, abs(c.diff), alpha, s.power, s.max_seeds)
                undecided.append(other)
                changes.append(f"{best} vs {other}: " + (f"about {n} seeds per cell would "
                               "decide it" if n else "too close to decide with a feasible "
                               "number of seeds"))
        if undecided:
            answer = f"undecided between {best} and {', '.join(undecided)}"
        elif equal:
            answer = (f"{' or '.join([best, *equal])}: equivalent within the margin "
                      f"{s.margin_text()}")
        else:
            answer = f"{best} ({'higher' if s.maximize else 'lower'} {s.test_metric})"
        sure_text = "; ".join(sure) + (f"; {acc}" if acc else "")
        rows.append([cond, _with(answer, note), sure_text, cost,
                     "; ".join(changes) or "nothing flagged: converged, >= 10 trials, no "
                     "failed seeds"])
    return pd.DataFrame(rows, columns=COLUMNS)


def _with(answer: str, note: str) -> str:
    """The verdict first, kept as it was; the fitted-baseline note after it."""
    return f"{answer}; {note}" if note else answer


def _headline_metric(ev: Evidence, cond: str) -> str | None:
    """The test metric the condition's loss kind leads with (test_acc for classification)."""
    ps = ev.parents[ev.parents["condition"] == cond]
    kinds = set(ps["tags.loss_kind"].dropna()) if "tags.loss_kind" in ps else set()
    return headline_metric(kinds.pop()) if len(kinds) == 1 else None


def fitted_note(ev: Evidence, s: Settings, cond: str, cells: list[str]) -> str:
    """'' or 'but neither cell beats the fitted 1-NN (test_acc 0.969 vs best cell gru
    0.919)': the cells' re-evaluated means against the best fitted baseline's single
    deterministic figure (test set), on the test metric, and for classification also on
    test accuracy, the number a newcomer reads first."""
    checks = [(s.test_metric, s.maximize)]
    if _headline_metric(ev, cond) == "test_acc" and s.test_metric != "test_acc":
        checks.append(("test_acc", True))
    lost = []
    for metric, maximize in checks:
        base = best_fitted({fitted_key(m, metric): ev.baseline(cond, fitted_key(m, metric))
                            for m in MODELS}, metric, maximize)
        means = {c: float(np.mean(v)) for c in cells
                 if (v := ev.values(c, cond, f"metrics.{metric}"))}
        if base is None or not means:
            continue
        cell = (max if maximize else min)(means, key=means.__getitem__)
        if (means[cell] > base[1]) if maximize else (means[cell] < base[1]):
            continue
        lost.append(f"the fitted {LABELS[base[0]]} ({metric} {base[1]:.4g} vs best cell {cell} "
                    f"{means[cell]:.4g})")
    if not lost:
        return ""
    return f"but {'neither cell' if len(cells) == 2 else 'no cell'} beats {' or '.join(lost)}"


def _accuracy(ev: Evidence, cond: str, cells: list[str]) -> str:
    """Classification: test accuracy beside the majority-class rate."""
    accs = {c: ev.values(c, cond, "metrics.test_acc") for c in cells}
    if not any(accs.values()):
        return ""
    base = ev.baseline(cond, "baseline_acc")
    shown = ", ".join(f"{c} {np.mean(v):.3g}" for c, v in accs.items() if v)
    return (f"test accuracy {shown} vs majority-class rate "
            f"{'not recorded' if base is None else f'{base:.3g}'}")


def bottom_line_text(s: Settings) -> str:
    scale = "log values (ratios)" if s.effect_scale() != "raw" else "raw values"
    return (f"Per data condition, from the re-evaluation seeds' {s.test_metric} (test set): "
            f"a cell is named only when the interval of its difference to every other cell "
            f"excludes no difference (Welch-type t on {scale}, {s.df_rule} df, Bonferroni over "
            f"all comparisons below at alpha={s.alpha}); 'equivalent' only when the interval "
            f"lies within the margin {s.margin_text()}. When no cell's mean beats the best fitted "
            f"baseline (a linear model or 1-NN, one deterministic fit on the cells' split, "
            f"test set; section 1) on {s.test_metric}, or for classification on test_acc, "
            f"the answer says so. The six claims follow in section 6.")
