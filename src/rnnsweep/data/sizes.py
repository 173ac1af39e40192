"""Training-set sizes: `small` and `large` (each task's two sizes), or a point of a learning
curve: a fraction of the large training set (`0.25`, `1.0`) or a count of training
sequences (`500`). `python train.py -m cell=lstm,gru data.size=0.05,0.1,0.25,0.5,1` draws
one study per cell and size; the report fits each cell's curve (rnnsweep.report.curves)."""

from __future__ import annotations

import re

from rnnsweep.errors import ConfigError

NAMED = ("small", "large")
_NUMBER = re.compile(r"^(\d+(\.\d*)?|\.\d+)$")


def curve_point(size: str) -> float | None:
    """The number a curve size stands for (a fraction <= 1 or a count), None for small/large."""
    return float(size) if _NUMBER.match(str(size)) else None


def check_size(size: str, task: str, curves: bool) -> None:
    """Refuse, in one line naming data.size, what is neither a named size nor a valid point."""
    if size in NAMED:
        return
    point = curve_point(size)
    allowed = "small, large, a fraction in (0, 1] of the large training set or a count >= 2"
    if point is None:
        raise ConfigError(f"data.size={size!r} is invalid: allowed: {allowed}")
    if not curves:
        raise ConfigError(f"data.size={size}: task {task} has no learning-curve sizes "
                          "(its sizes are small and large)")
    if point <= 0 or (point > 1 and (point != int(point) or point < 2)):
        raise ConfigError(f"data.size={size} is invalid: allowed: {allowed}")


def train_count(size: str, n_small: int, n_large: int) -> int:
    """Training sequences of a size: small/large as configured, a fraction of the large set
    (at least 2) or a count, which must not exceed the large set."""
    if size == "small":
        return n_small
    if size == "large":
        return n_large
    point = curve_point(size)
    assert point is not None  # check_size ran when the config was read
    n = max(2, round(point * n_large)) if point <= 1 else int(point)
    if n > n_large:
        raise ConfigError(f"data.size={size}: {n} training sequences, more than the "
                          f"{n_large} the large training set holds")
    return n
