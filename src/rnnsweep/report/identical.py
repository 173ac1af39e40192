"""Values of two cells on identical configurations (same sampled parameters and seed): the
pairs behind the exact parameter counts that trials logged."""

from __future__ import annotations

import numpy as np

from rnnsweep.report.claim_types import ARTICLE, Pair
from rnnsweep.report.collect import Sweep


def identical_pairs(sweep: Sweep, column: str,
                    pair: Pair = ARTICLE) -> tuple[list[float], list[float]]:
    """The pair's values of `column` (first, second) on identical configurations: same
    sampled parameters and seed. The unit is the configuration: the seeded sampler proposes
    the same start-up configurations in every condition, so a configuration met in several
    conditions is one pair (geometric mean over the conditions where both cells ran it), not
    several."""
    trials = sweep.trials
    params = [f"params.{k}" for k in sweep.space if f"params.{k}" in trials.columns]
    if column not in trials.columns or not params or "params.seed" not in trials.columns:
        return [], []
    keys = [*params, "params.seed"]
    first = trials[trials["tags.cell"] == pair.first][["condition", *keys, column]]
    second = trials[trials["tags.cell"] == pair.second][["condition", *keys, column]]
    merged = first.merge(second, on=["condition", *keys], suffixes=("_a", "_b")).dropna()
    if merged.empty:
        return [], []
    a, b = merged[f"{column}_a"].astype(float), merged[f"{column}_b"].astype(float)
    positive = bool((a > 0).all() and (b > 0).all())
    merged = merged.assign(_a=np.log(a) if positive else a, _b=np.log(b) if positive else b)
    per_config = merged.groupby(keys, dropna=False)[["_a", "_b"]].mean()
    if positive:
        per_config = np.exp(per_config)
    return per_config["_a"].tolist(), per_config["_b"].tolist()
