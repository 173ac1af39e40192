"""Published vs measured: the paper figures of published/results.csv beside this sweep's numbers.

A sweep run with a paper profile (experiment=weiss2018, chung2014, hochreiter1997, greff2017 or
their *_smoke variants; the profile is the `profile` tag of every study) gets one row per
published figure of that profile: the paper's number, ours (mean ± sd over seeds and the
seeds' values) and a verdict on the published direction:

- `above:<cell>` / `below:<cell>`: this cell's mean is above / below the other cell's mean in
  the same condition (the paper's test of a^n b^n, test NLL);
- `solves:T=<len>`: at that sequence length the cell's mean test accuracy (|error| < the
  task's tolerance) is at least SOLVED_ACC; "training sequences to solve" is the first
  validation at which val_acc reached SOLVED_ACC, times the batch size;
- `rank:<k>`: the parameter has fANOVA rank k in the cell's study (section 4's importances),
  read only from a study whose runs trained (published_checks.TRAINED_SHARE).

Verdicts: "reproduced in direction", "not reproduced", or "not measured" (the sweep lacks
the cell, the length or the trials, or the runs did not train). An above/below row is
"reproduced in direction" only when its one-sided Welch test rejects after Holm's
correction across all comparisons of the paper's rows (published_checks); a mean in the
published direction that the seeds cannot tell from chance is "same direction, not
significant", so three noisy seeds never read as a reproduction. A row's `also` column
names further metrics shown beside the verdict (e.g. weiss2018's strict count and count past
the training range). Seeds are the re-evaluation runs; when the study's space is fixed
(every parameter's low equals its high), its trials are the same model with other seeds
and are counted too. The protocol differences per profile come from
published/protocol_differences.yaml. Nothing here changes a number to agree with a paper.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rnnsweep.report.collect import Sweep
from rnnsweep.report.published_checks import (
    ALPHA,
    NOT_MEASURED,
    NOT_REPRODUCED,
    NOT_SIGNIFICANT,
    REPRODUCED,
    TRAINED_SHARE,
    Comparison,
    direction_text,
    direction_verdict,
    holm,
    rank_rows,
)
from rnnsweep.report.published_seeds import (
    SOLVED_ACC,
    batch_size,
    condition_lengths,
    fixed_space,
    ours,
    runs_of,
    seed_runs,
    sequences_to_solve,
    unconverged,
    values,
)
from rnnsweep.report.render import Document, save_csv

# The repository's published/ folder (src/rnnsweep/report/ -> repo root).
PUBLISHED_DIR = Path(__file__).resolve().parents[3] / "published"
COLUMNS = ("id", "paper", "profile", "table", "setting", "cell", "quantity", "metric", "value",
           "relation", "expect", "unit", "also", "citation")
HEADING = "7. Published vs measured"


def load_published(path: Path | None = None) -> pd.DataFrame:
    """The published figures; raises ValueError naming missing columns."""
    df = pd.read_csv(path or PUBLISHED_DIR / "results.csv", dtype={"value": float})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path or PUBLISHED_DIR / 'results.csv'}: missing columns {missing}")
    return df


def load_differences(path: Path | None = None) -> dict[str, list[str]]:
    file = path or PUBLISHED_DIR / "protocol_differences.yaml"
    return yaml.safe_load(file.read_text()) if file.exists() else {}


def base_profile(profile: str, known: set[str]) -> str | None:
    """weiss2018_smoke -> weiss2018: the published profile a sweep's profile belongs to."""
    if profile in known:
        return profile
    return next((k for k in sorted(known, key=len, reverse=True)
                 if profile.startswith(k + "_")), None)


def sweep_profile(sweep: Sweep) -> str | None:
    col = sweep.parents.get("tags.profile")
    if col is None or col.dropna().empty:
        return None
    return str(col.dropna().iloc[0])


def _published_text(row: pd.Series) -> str:
    if str(row["metric"]).startswith("importance_rank:"):
        return f"rank {int(row['value'])}"
    value = f"{row['value']:g}" if float(row["value"]) != int(row["value"]) else \
        f"{int(row['value']):,}"
    rel = "" if row["relation"] == "=" else f"{row['relation']} "
    return f"{rel}{value} {row['unit']}"


def compare_rows(sweep: Sweep, rows: pd.DataFrame, imp: pd.DataFrame) -> pd.DataFrame:
    """One line per published row and condition of the sweep: published, ours, verdict.

    `rows` are one paper's: their direction comparisons form one Holm family."""
    runs = seed_runs(sweep)
    late = unconverged(sweep)
    conditions = sorted(sweep.parents["condition"].unique())
    batch = batch_size(sweep) if rows["expect"].str.startswith("solves:").any() else None
    out: list[dict] = []
    tests: list[Comparison] = []  # every direction comparison, for one Holm correction
    for _, row in rows.iterrows():
        kind, _, arg = str(row["expect"]).partition(":")
        base = {"paper": row["paper"], "result": f"{row['cell']}: {row['quantity']}",
                "setting": row["setting"], "published": _published_text(row)}
        if kind in ("above", "below"):
            gaps = _published_gaps(row, rows)
            for cond in conditions:
                out.append(_direction_row(base, row, kind, arg, cond, sweep, runs, late,
                                          tests, gaps))
        elif kind == "solves":
            out.extend(_solves_rows(base, row, arg, sweep, runs, conditions, batch, late))
        elif kind == "rank":
            out.extend(rank_rows(base, row, imp, sweep, late))
    levels = holm(tests)
    for line in out:  # direction verdicts, now that the family is known
        pending = line.pop("_pending", None)
        if pending is not None:
            line.update(_finish_direction(pending, levels))
    cols = ["paper", "result", "setting", "published", "condition", "ours", "verdict",
            "evidence"]
    return pd.DataFrame(out, columns=cols)


def _direction_row(base: dict, row: pd.Series, kind: str, arg: str, cond: str,
                   sweep: Sweep, runs: pd.DataFrame, late: set[tuple[str, str]],
                   tests: list[Comparison], gaps: dict[str, float]) -> dict:
    """A row whose verdict waits for the Holm family; its comparisons join `tests`."""
    cells = _cells_of(row, arg)
    mine = values(runs, row["cell"], cond, row["metric"])
    parts = []
    for other in cells[1:]:
        theirs = values(runs, other, cond, row["metric"])
        if not mine.size or not theirs.size:
            parts.append((other, None, theirs))
            continue
        hi, lo = (mine, theirs) if kind == "above" else (theirs, mine)
        hi_cell, lo_cell = (row["cell"], other) if kind == "above" else (other, row["cell"])
        c = Comparison((hi_cell, lo_cell, cond, str(row["metric"])), hi, lo)
        tests.append(c)
        parts.append((other, c, theirs))
    notes = [e for e in (_also_text(row, cond, runs, cells), budget_text(cells, cond, late),
                         _magnitude(row, mine), search_text(sweep, cond, cells)) if e]
    return {**base, "condition": cond, "ours": ours(mine),
            "_pending": (kind, parts, notes, gaps)}


def _cells_of(row: pd.Series, arg: str) -> list[str]:
    """The row's cell, then the cells it is compared with ("gru;above:lstm")."""
    return [str(row["cell"]), *(o.split(":")[-1] for o in arg.split(";"))]


def _published_gaps(row: pd.Series, rows: pd.DataFrame) -> dict[str, float]:
    """other cell -> |published value of this row - the other cell's published value| for the
    same metric (the effect the paper reports), where the paper gives both."""
    out = {}
    for other in _cells_of(row, str(row["expect"]).partition(":")[2])[1:]:
        same = rows[(rows["cell"] == other) & (rows["metric"] == row["metric"])
                    & (rows["relation"] == "=")]
        if len(same) and row["relation"] == "=":
            out[other] = abs(float(row["value"]) - float(same["value"].iloc[0]))
    return out


def search_text(sweep: Sweep, cond: str, cells: list[str]) -> str:
    """'searches: gru 8 complete of 8 trials (4 proposed by the sampler's model), …': how much
    of each compared cell's search finished (fair_pruner), per study of the condition."""
    parts: list[str] = []
    if not {"tags.cell", "condition"} <= set(sweep.parents.columns):
        return ""
    if fixed_space(sweep.space):  # the paper's one configuration: no search to compare
        return "no search: every cell runs the profile's one fixed configuration"
    for cell in cells:
        studies = sweep.parents[(sweep.parents["tags.cell"] == cell)
                                & (sweep.parents["condition"] == cond)]
        for _, p in studies.iterrows():
            n = {k: pd.to_numeric(p.get(f"metrics.{k}"), errors="coerce")
                 for k in ("n_complete", "n_sampler_complete", "n_pruned", "n_failed")}
            if pd.isna(n["n_complete"]):
                continue
            total = int(sum(n[k] for k in ("n_complete", "n_pruned", "n_failed")
                            if pd.notna(n[k])))
            own = ("" if pd.isna(n["n_sampler_complete"]) else
                   f" ({int(n['n_sampler_complete'])} proposed by the sampler's model)")
            parts.append(f"{cell} {int(n['n_complete'])} complete of {total} trials{own}")
    return "searches: " + ", ".join(parts) if parts else ""


def _finish_direction(pending: tuple, levels: dict[tuple, float]) -> dict:
    kind, parts, extra, gaps = pending
    verdicts, evidence = [], []
    for other, c, theirs in parts:
        if c is None:
            verdicts.append(NOT_MEASURED)
            evidence.append(f"{other}: not measured")
            continue
        verdicts.append(direction_verdict(c, levels))
        evidence.append(direction_text(kind, other, c, levels, ours(theirs).split(" (")[0],
                                       gaps.get(other)))
    verdict = next(v for v in (NOT_MEASURED, NOT_REPRODUCED, NOT_SIGNIFICANT, REPRODUCED)
                   if v in verdicts)
    return {"verdict": verdict, "evidence": "; ".join(evidence + extra)}


def _also_text(row: pd.Series, cond: str, runs: pd.DataFrame, cells: list[str]) -> str:
    """The row's further metrics (`also` column, ';'-separated), per cell: mean ± sd."""
    names = [m for m in str(row.get("also") or "").split(";") if m.strip() and m != "nan"]
    parts = []
    for metric in names:
        per_cell = [f"{c} {ours(v).split(' (')[0]}" for c in cells
                    if (v := values(runs, c, cond, metric.strip())).size]
        if per_cell:
            parts.append(f"{metric.strip()}: {', '.join(per_cell)}")
    return "; ".join(parts)


def budget_text(cells: list[str], cond: str, late: set[tuple[str, str]]) -> str:
    """The cells of a row whose best trial was still improving at the end of its budget
    ('' when none): there the budget, not the cell, may have decided the row."""
    budget = [c for c in cells if (c, cond) in late]
    return (f"not converged: {', '.join(budget)} (still improving in the last 10 % of the "
            "step budget: the budget may have decided)") if budget else ""


def _sequence_budget(runs: pd.DataFrame, batch: int | None, published: float) -> str:
    """The training sequences a seed could see (step budget x batch) against the published
    count: a seed that never solved within more than the published count is evidence against
    it whether or not more steps would have solved it."""
    steps = pd.to_numeric(runs.get("params.budget_steps", pd.Series(dtype=float)),
                          errors="coerce").dropna()
    if batch is None or steps.empty:
        return ""
    seen = float(steps.max()) * batch
    return f"budget {seen:,.0f} training sequences per seed, {seen / published:.2g}x the published"


def _solves_rows(base: dict, row: pd.Series, arg: str, sweep: Sweep, runs: pd.DataFrame,
                 conditions: list[str], batch: int | None,
                 late: set[tuple[str, str]]) -> list[dict]:
    length = arg.split("=", 1)[1]
    lengths = condition_lengths(sweep)
    conds = [c for c in conditions if lengths.get(c) == length]
    if not conds:
        have = ", ".join(sorted(set(lengths.values()), key=int)) or "none"
        return [{**base, "condition": f"T={length}", "ours": "n/a", "verdict": NOT_MEASURED,
                 "evidence": f"the sweep has no T={length} (lengths: {have})"}]
    out = []
    for cond in conds:
        acc = values(runs, row["cell"], cond, "test_acc")
        seqs = sequences_to_solve(runs_of(runs, row["cell"], cond), batch)
        solved = seqs[np.isfinite(seqs)]
        verdict = NOT_MEASURED if not acc.size else (
            REPRODUCED if float(np.mean(acc)) >= SOLVED_ACC else NOT_REPRODUCED)
        others = []  # every other cell's accuracy and sequences, as the paper's rows
        cells = [row["cell"], *sorted(set(runs["tags.cell"]) - {row["cell"]})]
        for other in cells[1:]:
            oa = values(runs, other, cond, "test_acc")
            if not oa.size:
                continue
            text = f"{other} test acc {np.mean(oa):.3g}"
            theirs = sequences_to_solve(runs_of(runs, other, cond), batch)
            ok = theirs[np.isfinite(theirs)]
            if ok.size:
                text += (f", solved after {np.mean(ok):.3g} sequences in {ok.size} of "
                         f"{theirs.size} seeds")
            elif theirs.size:
                text += f", never solved in {theirs.size} seeds"
            others.append(text)
        budget = _sequence_budget(runs_of(runs, row["cell"], cond), batch, float(row["value"]))
        out.append({**base, "condition": cond,
                    "ours": (f"sequences to solve: {ours(solved)}; "
                             f"{seqs.size - solved.size} of {seqs.size} seeds never "
                             f"reached val acc {SOLVED_ACC}" if seqs.size else
                             "sequences to solve: n/a") + f"; test acc {ours(acc)}",
                    "verdict": verdict,
                    "evidence": "; ".join(e for e in (
                        f"solved = mean test acc >= {SOLVED_ACC}", budget, ", ".join(others),
                        budget_text(cells, cond, late)) if e)})
    return out


def _magnitude(row: pd.Series, mine: np.ndarray) -> str:
    """How many seeds meet the published number itself: a bound such as '> 1000', or an
    '=' on whole-number outcomes (weiss2018's 0/1 acceptance; not a decimal such as an NLL,
    which no seed matches exactly)."""
    whole = row["relation"] == "=" and bool(np.all(mine == np.round(mine)))
    if not mine.size or (row["relation"] not in (">", "<=", "<", ">=") and not whole):
        return ""
    ops = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal,
           "=": np.equal}
    k = int(ops[row["relation"]](mine, float(row["value"])).sum())
    return f"{k} of {mine.size} seeds {row['relation']} {float(row['value']):g} as published"


def section(doc: Document, sweep: Sweep, imp: pd.DataFrame, tab_dir: Path) -> pd.DataFrame:
    """Add the section when the sweep's profile has published rows; returns its table."""
    table = load_published()
    profile = sweep_profile(sweep)
    base = base_profile(profile, set(table["profile"])) if profile else None
    if base is None:
        return pd.DataFrame()
    rows = table[table["profile"] == base]
    result = compare_rows(sweep, rows, imp)
    doc.heading(HEADING)
    cites = "; ".join(dict.fromkeys(rows["citation"]))
    doc.para(f"Profile {profile}: the published figures of published/results.csv ({cites}) "
             f"beside this sweep's. Ours: mean ± sd over seeds (re-evaluation runs; also the "
             f"trials when the space is fixed) and each seed's value. A verdict checks the "
             f"published direction, not the decimals; magnitudes are compared in 'evidence'. "
             f"Two cells' comparisons are one-sided Welch tests with Holm's correction across "
             f"all comparisons of this paper's rows (family-wise {ALPHA}; a comparison that two "
             f"rows state counts once). fANOVA ranks are read only from studies whose runs "
             f"trained: best value at least {TRAINED_SHARE:.0%} of the way from the trivial "
             f"predictor to a perfect score (for a loss, at most "
             f"{1 - TRAINED_SHARE:.0%} of the trivial loss). "
             f"'not measured': the sweep lacks the cell, length or trials the row needs, or "
             f"its runs did not train.")
    if profile != base:
        doc.para(f"{profile} is a smoke-sized variant of {base} (conf/experiment/"
                 f"{profile}.yaml): tiny budgets that check the machinery; its numbers say "
                 f"nothing about the paper. The differences below are those of {base}.")
    doc.table(result)
    diffs = load_differences().get(base, [])
    if diffs:
        doc.para("Protocol differences from the paper: " + "; ".join(diffs) + ".")
    save_csv(result, tab_dir / "published.csv")
    return result
