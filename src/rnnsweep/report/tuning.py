"""Tuned optimum across independent searches: the report's table for `search.repeats=k`.

One Optuna search picks one configuration, and which one is a random draw of its own (the
sampler's seed, the trials' seeds). With k independent searches per study (search.repeats;
rnnsweep.search.repeats) the report shows, per condition and cell, each search's selection
statistic (its best trial's validation value), the re-evaluated test metric of the
configuration it chose, and the chosen hyperparameters, with their spread across searches
beside the seed spread within one search. The claims pool all k searches' re-evaluation
seeds (rnnsweep.report.evidence), so their intervals already include this spread; the table
says how much of it is the tuning. No section when every search is one study.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rnnsweep.report.collect import Sweep
from rnnsweep.report.render import Document, save_csv
from rnnsweep.report.tables import fmt, tuned_optima

HEADING = "Tuned optimum across independent searches"
CSV_NAME = "tuned_optima.csv"


def _spread(values: pd.Series) -> str:
    """'mean ± sd (min-max)' over the searches."""
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(float)
    if v.size == 0:
        return "n/a"
    sd = f" ± {v.std(ddof=1):.2g}" if v.size > 1 else ""
    return f"{v.mean():.4g}{sd} ({v.min():.4g}-{v.max():.4g})"


def _within(group: pd.DataFrame) -> float:
    """The seed sd within one search: root of the mean of the searches' seed variances."""
    sd = pd.to_numeric(group["test_sd"], errors="coerce").dropna().to_numpy(float)
    return float(np.sqrt(np.mean(sd**2))) if sd.size else np.nan


def view(long: pd.DataFrame, metric: str, test_metric: str, minimize: bool) -> pd.DataFrame:
    """One row per condition and cell (and sampler, where a control arm repeats too); per
    search in repeat order, `*` marking the search with the best selection statistic."""
    keys = ["condition", "cell", "sampler"]
    show_sampler = long["sampler"].nunique(dropna=False) > 1
    rows = []
    for (cond, cell, sampler), g in long.groupby(keys, sort=True, dropna=False):
        vals = pd.to_numeric(g["best_val"], errors="coerce")
        best = None if vals.isna().all() else vals.idxmin() if minimize else vals.idxmax()
        row = {"data": cond, "cell": cell}
        if show_sampler:
            row["sampler"] = sampler
        row.update({
            "searches": len(g),
            f"best trial {metric} per search": " / ".join(
                f"{fmt(v)}{' *' if i == best else ''}" for i, v in g["best_val"].items()),
            f"best trial {metric}: mean ± sd (range)": _spread(g["best_val"]),
            f"{test_metric} (re-eval mean) per search": " / ".join(
                f"{fmt(m)} (n={n})" for m, n in zip(g["test_mean"], g["n"], strict=True)),
            f"{test_metric} across searches: mean ± sd (range)": _spread(g["test_mean"]),
            "seed sd within a search": fmt(_within(g), 2),
            "tuned hyperparameters per search": "; ".join(
                f"r{r}: {p or 'not recorded'}" for r, p in zip(g["repeat"], g["params"],
                                                                strict=True)),
        })
        rows.append(row)
    return pd.DataFrame(rows)


def section(doc: Document, sweep: Sweep, test_metric: str, tab_dir: Path) -> pd.DataFrame:
    """Add the section (a level-3 heading: it belongs after section 1's summary table) when
    some search ran as two or more independent repeats, and write tables/tuned_optima.csv
    (one row per search); returns that table (empty, and nothing added: no repeats)."""
    long = tuned_optima(sweep, test_metric)
    if long.empty:
        return long
    doc.heading(HEADING, 3)  # a part of section 1, the summary it breaks down
    doc.para(f"search.repeats ran independent searches per cell and condition: each its own "
             f"Optuna study (name suffix -r<k>) with its own sampler seed and training seeds, "
             f"so which configuration it chose is a draw of its own. Per search: its best "
             f"trial's {sweep.metric} (the selection statistic; * the best of them) and the "
             f"re-evaluated {test_metric} of its chosen configuration (mean over its seeds, "
             f"test set), then their mean ± sd and range across searches, beside the seed sd "
             f"within one search (root mean square of the searches' seed sds). A spread "
             f"across searches well above the seed sd means the verdicts depend on the "
             f"tuning's luck as much as on the seeds; the claims and the bottom line pool "
             f"every search's seeds, so their intervals include it.")
    doc.table(view(long, sweep.metric, test_metric, sweep.minimize))
    save_csv(long, tab_dir / CSV_NAME)
    return long
