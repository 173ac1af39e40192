"""A study's fixed settings: everything outside its search space that changes training or
data. Stored with the study (user attr `fixed_settings`) and shown on its parent run (tags
`fixed_settings`, `settings_hash`), so a rerun with other settings cannot silently add
trials that are not comparable with the study's (issue 12, item 5).

Counted (rnnsweep.job.fixed_settings reads them from the job's config): the resolved `cell`,
`model`, `optim`, `trainer` and `data` sections, the training `seed` and `search.metric`
(what early stopping and the best weights follow), minus the keys the space samples and
minus what does not change a trial's result: worker threads, the progress bar and the
memory probe. Not counted: `search.n_trials`, the stores, heartbeats,
the report, logging.

A rerun with other settings is refused (search.on_changed_settings=refuse, the default) or
opens a study of its own beside the old one, named with the settings' hash
(search.on_changed_settings=new_study).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SETTINGS_ATTR = "fixed_settings"


def settings_text(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(settings_text(settings).encode()).hexdigest()[:8]


def changed(stored: str, settings: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old, new) for each setting that differs from the stored text; a key only one
    side has shows `absent` on the other."""
    old = json.loads(stored)
    new = json.loads(settings_text(settings))
    keys = sorted(set(old) | set(new))
    return [(k, old.get(k, "absent"), new.get(k, "absent")) for k in keys
            if old.get(k, "absent") != new.get(k, "absent")]


def describe_changes(changes: list[tuple[str, Any, Any]], limit: int = 6) -> str:
    shown = [f"{k} {json.dumps(a)} -> {json.dumps(b)}" for k, a, b in changes[:limit]]
    if len(changes) > limit:
        shown.append(f"{len(changes) - limit} more")
    return ", ".join(shown)
