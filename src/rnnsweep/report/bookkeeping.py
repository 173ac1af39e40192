"""Which runs count: the sweep to report, each study's current re-evaluations, failed seeds.

Pure functions on the DataFrames of `mlflow.search_runs`, so every rule is tested on
constructed runs:
- the latest sweep is the sweep of the run started last (a resumed parent keeps its old start
  time but is re-tagged with the new sweep id, so parents alone can mislead);
- an older sweep is reported as it stood: its studies' runs up to its last run, with each
  study's best taken from those runs when the study was resumed later;
- claims use only re-evaluations of the parent's current best trial; failed or killed seeds
  are counted per study, never dropped silently.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from rnnsweep.search.repeats import REPEAT_TAG, search_group

FAILED_STATUSES = ("FAILED", "KILLED")


def _col(df: pd.DataFrame, name: str, default: object = np.nan) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(default, index=df.index, dtype=object)


def latest_sweep_id(runs: pd.DataFrame) -> str:
    """The sweep id of the run (study, trial or re-evaluation) that started last."""
    tagged = runs.dropna(subset=["tags.sweep_id"])
    return str(tagged.sort_values("start_time", kind="stable")["tags.sweep_id"].iloc[-1])


def snapshot(
    parents: pd.DataFrame, children: pd.DataFrame, sweep_id: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The studies of one sweep and their runs as they stood when that sweep ended.

    A study belongs to the sweep when its parent or any of its runs carries the sweep id.
    Runs that started after the sweep's last run belong to a later resume and are left out;
    a parent re-tagged by a later sweep gets its best trial and trial counts recomputed from
    the runs kept (column `resumed_later` says so).
    """
    mine = children[_col(children, "tags.sweep_id") == sweep_id]
    ids = set(parents.loc[parents["tags.sweep_id"] == sweep_id, "run_id"])
    ids |= set(_col(mine, "tags.mlflow.parentRunId").dropna())
    ps = parents[parents["run_id"].isin(ids)].copy().reset_index(drop=True)
    if ps.empty:
        return ps, children.iloc[0:0]
    started = pd.concat([ps.loc[ps["tags.sweep_id"] == sweep_id, "start_time"],
                         _col(mine, "start_time")]).dropna()
    end = started.max() if len(started) else None
    kids = children[_col(children, "tags.mlflow.parentRunId").isin(ids)]
    if end is not None and "start_time" in kids.columns:
        kids = kids[kids["start_time"] <= end]
    kids = kids.reset_index(drop=True)
    ps["resumed_later"] = ps["tags.sweep_id"] != sweep_id
    for i in ps.index[ps["resumed_later"]]:
        _restate(ps, i, kids)
    return ps, kids


def _restate(ps: pd.DataFrame, i: int, kids: pd.DataFrame) -> None:
    """Best trial and counts of parent row i from the runs kept (a later resume changed them)."""
    trials = kids[(kids["tags.mlflow.parentRunId"] == ps.at[i, "run_id"])
                  & (_col(kids, "tags.role") == "trial")]
    state = _col(trials, "tags.state")
    for name, key in (("COMPLETE", "metrics.n_complete"), ("PRUNED", "metrics.n_pruned"),
                      ("FAIL", "metrics.n_failed")):
        ps.loc[i, key] = float((state == name).sum())
    metric_cols = [c for c in ps.columns if c.startswith("metrics.best_") and c in trials]
    complete = trials[state == "COMPLETE"]
    reevals = kids[(kids["tags.mlflow.parentRunId"] == ps.at[i, "run_id"])
                   & (_col(kids, "tags.role") == "reeval")]
    best = None
    if len(reevals) and "tags.best_trial_number" in reevals:
        # The re-evaluations of that sweep name the best trial it had found.
        number = reevals.sort_values("start_time")["tags.best_trial_number"].iloc[-1]
        best = complete[_col(complete, "tags.trial_number") == number]
    if (best is None or best.empty) and metric_cols and len(complete):
        key = metric_cols[0]  # metrics.best_<metric>; the direction is not known here
        best = complete.loc[[complete[key].astype(float).idxmin()]]
    if best is None or best.empty:
        return
    b = best.iloc[0]
    ps.loc[i, "tags.best_trial_number"] = b.get("tags.trial_number")
    ps.loc[i, "tags.best_trial_run_id"] = b.get("run_id")
    for key in metric_cols:
        ps.loc[i, key] = b.get(key)


def reeval_ok(df: pd.DataFrame) -> pd.Series:
    """Finished and not marked failed (a FAIL tag wins over a FINISHED status)."""
    return (_col(df, "status") == "FINISHED") & (_col(df, "tags.state") != "FAIL")


def current_reevals(parents: pd.DataFrame, reevals: pd.DataFrame) -> pd.DataFrame:
    """Re-evaluations of each parent's current best trial (any status), with a column `ok`.

    A resumed study may have found a new best: seeds of the older best configuration are
    another configuration and must not be pooled with the current one.
    """
    if reevals.empty or parents.empty:
        out = reevals.iloc[0:0].copy()
        out["ok"] = pd.Series(dtype=bool)
        return out
    best = dict(zip(parents["run_id"], _col(parents, "tags.best_trial_number").astype(str),
                    strict=True))
    parent_best = _col(reevals, "tags.mlflow.parentRunId").map(best)
    mask = parent_best.notna() & (parent_best == _col(reevals, "tags.best_trial_number")
                                  .astype(str))
    out = reevals[mask].copy()
    out["ok"] = reeval_ok(out)
    return out


def seed_counts(reevals: pd.DataFrame, parent_run_id: str) -> tuple[int, int, list[str]]:
    """(finished seeds, failed or killed seeds, their reasons) of one study's current best."""
    rows = reevals[reevals["tags.mlflow.parentRunId"] == parent_run_id] \
        if len(reevals) else reevals
    if rows.empty:
        return 0, 0, []
    ok = rows["ok"] if "ok" in rows else reeval_ok(rows)
    bad = rows[~ok & (_col(rows, "status").isin(FAILED_STATUSES)
                      | (_col(rows, "tags.state") == "FAIL"))]
    reasons = [str(r) for r in _col(bad, "tags.fail_reason") if isinstance(r, str)]
    return int(ok.sum()), int(len(bad)), reasons


def repeat_numbers(parents: pd.DataFrame) -> pd.Series:
    """Each study's search repeat (tag search_repeat; 0 for a study from before the tag)."""
    r = pd.to_numeric(_col(parents, f"tags.{REPEAT_TAG}"), errors="coerce")
    return r.fillna(0).astype(int)


def search_groups(parents: pd.DataFrame) -> pd.Series:
    """Per study, the search it is a repeat of (its name without the repeat suffix): the
    independent repeats of one search (search.repeats) share it, other studies do not."""
    names = _col(parents, "tags.study_name").where(_col(parents, "tags.study_name").notna(),
                                                   _col(parents, "run_id"))
    return pd.Series([search_group(str(n), r) for n, r in
                      zip(names, repeat_numbers(parents), strict=True)], index=parents.index,
                     dtype=object)


def primary_parents(parents: pd.DataFrame) -> pd.DataFrame:
    """One search per cell and condition, with every independent repeat of it (search.repeats:
    several studies, pooled by the claims): a random-search control arm (tags.search_sampler
    == 'random') only when no other study measured that cell and condition."""
    if parents.empty:
        return parents
    ps = parents.copy()
    ps["_control"] = _col(ps, "tags.search_sampler") == "random"
    ps["_group"] = search_groups(ps)
    ps = ps.sort_values(["_control", "start_time"] if "start_time" in ps else ["_control"],
                        ascending=[True, False] if "start_time" in ps else [True])
    chosen = ps.drop_duplicates(["tags.cell", "condition"])[["tags.cell", "condition", "_group"]]
    ps = ps.merge(chosen, on=["tags.cell", "condition", "_group"])
    ps["_repeat"] = repeat_numbers(ps)
    return ps.sort_values(["condition", "tags.cell", "_repeat"])\
        .drop(columns=["_control", "_group", "_repeat"]).reset_index(drop=True)


def is_diverged(reason: object) -> bool:
    """A failure from non-finite values (NaN or inf loss), as opposed to a crash."""
    return isinstance(reason, str) and bool(_DIVERGED.search(reason))


_DIVERGED = re.compile(r"non-?finite|\bnan\b|\binf\b|infinite|diverg", re.IGNORECASE)


def finite(value: object) -> float | None:
    """A float for JSON: None when missing or not finite."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
