"""Where a relative data path points: the project root, not Hydra's job directory."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """RNNSWEEP_ROOT (set by train.py, the same value as paths.root), else the working dir."""
    return Path(os.environ.get("RNNSWEEP_ROOT") or os.getcwd())


def resolve_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p
