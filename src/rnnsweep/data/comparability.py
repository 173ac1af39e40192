"""Data that cannot support a comparison of cells, refused before anything runs.

The class of input, not one instance: a model has nothing to learn when the training
targets never vary (one class, a constant) or the inputs never vary (every training sequence
the same, so no input can explain a target); a split has nothing to measure when it holds
fewer than two sequences. (A class in val or test that training never shows is refused by
the file's loader.) Each is one line naming the file, the split and why, raised as a
DataError (exit 2, nothing created).
"""

from __future__ import annotations

import numpy as np

from rnnsweep.errors import DataError

MIN_SEQUENCES = 2


def check_learnable(name: str, x: np.ndarray, y: np.ndarray, classification: bool) -> None:
    """Before any split: targets that never vary, or inputs that never vary (x: (N, T, F))."""
    flat = np.asarray(y).reshape(len(y), -1)
    if (flat == flat[0]).all():
        what = "one class" if classification else "one constant value"
        raise DataError(f"{name}: every target is {what}: nothing to learn, so no cell can be "
                        "compared with another")
    inputs = np.asarray(x).reshape(len(x), -1)
    if (inputs == inputs[0]).all():
        raise DataError(f"{name}: every sequence has the same inputs: no input can explain a "
                        "target, so nothing can be learned")


def check_split_sizes(name: str, sizes: dict[str, int]) -> None:
    """After the split: each split (and the subset trained on) holds at least two sequences."""
    for split, n in sizes.items():
        if n < MIN_SEQUENCES:
            raise DataError(f"{name}: the {split} split holds {n} sequence(s): a comparison "
                            f"needs at least {MIN_SEQUENCES} there (more data, or larger "
                            "data.val_fraction / data.test_fraction / data.small_fraction)")
