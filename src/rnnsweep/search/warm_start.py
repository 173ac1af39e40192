"""Seed a new study with the best configurations of another study of the same cell
(issue 16, item 2): `search.warm_start_from`.

The small- and large-data studies of one cell search the same space, so the large study can
start from what the small one found: the best `search.warm_start_top_k` completed trials of
the source study are queued (Optuna's `enqueue_trial`) as the new study's first trials. They
are trials of the study like any other (they count toward `search.n_trials` and train with
the study's own trial seeds), so every study still gets the same number of trials.

`search.warm_start_from`: null (off, the default), a data size (`small`: the study of the
same task, cell and data settings at that size, found by replacing the size in this study's
name) or a full study name in the same storage. The same key applies to every cell's study
of a sweep, and the source is always the same cell's, so all cells get the same treatment.

It happens once, when the study is created (a study that already has trials, e.g. one
resumed, is left alone), under the storage's lock so that workers starting together enqueue
once. What was done is stored on the study as the user attr `warm_start` (source, trial
numbers taken, or why nothing was queued), which the parent run can carry as a tag.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from rnnsweep.locks import store_lock

log = logging.getLogger(__name__)

WARM_ATTR = "warm_start"
OFF = "off"


def settings(search: DictConfig) -> tuple[str | None, int]:
    """(source, top k) from the `search` node (conf/search/tpe.yaml holds the defaults)."""
    source = search.warm_start_from
    return (str(source) if source not in (None, "") else None), int(search.warm_start_top_k)


def source_name(name: str, source: str) -> str:
    """The study to take configurations from: `source` itself when it names a study (has a
    '-'), else this study's name with its data size (second field: task-size-cell-...)
    replaced by `source`."""
    if "-" in source:
        return source
    parts = name.split("-")
    if len(parts) < 3:
        raise ValueError(f"study name {name!r} has no data-size field")
    parts[1] = source
    return "-".join(parts)


def _in_space(params: dict[str, Any], space: DictConfig) -> bool:
    """The params set exactly this space's parameters, each within its range or choices."""
    if set(params) != set(space.keys()):
        return False
    for name, p in space.items():
        v = params[name]
        if p.type in ("int", "float"):
            if not isinstance(v, (int, float)) or not (p.low <= v <= p.high):
                return False
        elif v not in list(p.choices):
            return False
    return True


def best_configurations(source: optuna.Study, space: DictConfig, k: int) -> list[
        tuple[int, dict[str, Any]]]:
    """(trial number, params) of the source's best k completed trials that fit the space,
    best first, without repeats."""
    done = [t for t in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    reverse = source.direction == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: (t.value, t.number), reverse=reverse)
    out: list[tuple[int, dict[str, Any]]] = []
    seen: set[str] = set()
    for t in done:
        key = json.dumps(t.params, sort_keys=True)
        if key in seen or not _in_space(t.params, space):
            continue
        seen.add(key)
        out.append((t.number, dict(t.params)))
        if len(out) == k:
            break
    return out


def warm_start(search: DictConfig, study: optuna.Study,
               storage: optuna.storages.BaseStorage) -> str:
    """Queue the source study's best configurations into a new `study`; returns (and stores
    on the study, once) what was done. 'off' when search.warm_start_from is null."""
    source, top_k = settings(search)
    if source is None:
        return OFF
    with store_lock(search.storage, f"warm-start:{study.study_name}"):
        done = study.user_attrs.get(WARM_ATTR)
        if done is not None:
            return str(done)
        if study.get_trials(deepcopy=False):
            record = "skipped: study already had trials"
        else:
            record = _enqueue(search.space, study, storage, source, top_k)
        study.set_user_attr(WARM_ATTR, record)
    log.info("study %s: warm start %s", study.study_name, record)
    return record


def _enqueue(space: DictConfig, study: optuna.Study, storage: optuna.storages.BaseStorage,
             source: str, top_k: int) -> str:
    name = source_name(study.study_name, source)
    if name == study.study_name:
        return f"none: {name} is this study"
    try:
        src = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return f"none: no study {name} in this storage"
    picked = best_configurations(src, space, top_k)
    for _, params in picked:
        study.enqueue_trial(params, skip_if_exists=True)
    if not picked:
        return f"none: {name} has no completed trial in this space"
    numbers = ",".join(str(n) for n, _ in picked)
    return f"{name} top {len(picked)} (trials {numbers})"
