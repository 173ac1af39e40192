"""Your own data: `data=file data.path=my.npz` (or a long-format .csv).

Integer (or string) targets make a classification task (cross-entropy, accuracy); float
targets a regression (MSE). See file_loaders for the format and its checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rnnsweep.data.base import TaskSpec, TensorDataModule
from rnnsweep.data.file_loaders import SequenceFile, check_splits, load_sequence_file
from rnnsweep.data.paths import resolve_path
from rnnsweep.errors import ConfigError, DataError


@dataclass
class FileDataConfig:
    task: str = "file"
    size: str = "small"
    # .npz or .csv; a relative path resolves against the project root.
    path: str = ""
    # Used only when the file has no `split`: a seeded 70/15/15 split, stratified by class.
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # small trains on this fraction of the training split; large on all of it.
    small_fraction: float = 0.25
    seed: int = 1234
    batch_size: int = 32
    # Regression: a prediction counts as correct when |error| < tolerance (val_acc).
    acc_tolerance: float = 0.04

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("data.path is missing: data=file needs data.path=<file.npz|.csv>")
        for key in ("val_fraction", "test_fraction"):
            v = getattr(self, key)
            if not 0.0 < v < 1.0:
                raise ConfigError(f"data.{key}={v} is invalid: must be in (0, 1)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("data.val_fraction + data.test_fraction is invalid: must be < 1")
        if not 0.0 < self.small_fraction <= 1.0:
            raise ConfigError(f"data.small_fraction={self.small_fraction} is invalid: "
                              "must be in (0, 1]")
        if self.acc_tolerance <= 0:
            raise ConfigError(f"data.acc_tolerance={self.acc_tolerance} is invalid: must be > 0")


def auto_split(data: SequenceFile, val_fraction: float, test_fraction: float,
               seed: int) -> np.ndarray:
    """Seeded train/val/test labels, stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    n = len(data.y)
    idx = np.arange(n)
    strat = data.y if data.classification else None
    held = val_fraction + test_fraction
    try:
        train, rest = train_test_split(idx, test_size=held, random_state=seed, stratify=strat)
        strat_rest = data.y[rest] if data.classification else None
        val, test = train_test_split(rest, test_size=test_fraction / held, random_state=seed,
                                     stratify=strat_rest)
    except ValueError as err:
        raise DataError(f"{data.path}: cannot split {n} sequences into train/val/test "
                        f"({err}); add a `split` array") from None
    split = np.empty(n, dtype=object)
    split[train], split[val], split[test] = "train", "val", "test"
    split = split.astype(str)
    check_splits(data.path, data.y, split, data.classification)
    return split


class FileDataModule(TensorDataModule):
    """Reads and checks the file at construction, so a bad file fails the sweep's preflight."""

    def __init__(self, cfg: FileDataConfig) -> None:
        super().__init__(batch_size=cfg.batch_size, shuffle_seed=cfg.seed)
        self.cfg = cfg
        self.data = load_sequence_file(resolve_path(cfg.path))
        d = self.data
        self.split = d.split if d.split is not None else auto_split(
            d, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        if d.classification:
            self.classes = np.unique(d.y[self.split == "train"])
            out, loss = len(self.classes), "ce"
        else:
            self.classes = None
            out, loss = (1 if d.y.ndim == 1 else d.y.shape[1]), "mse"
        variable = d.has_lengths and bool((d.lengths < d.x.shape[1]).any())
        self.spec = TaskSpec(input_size=d.x.shape[2], output_size=out, loss=loss,
                             variable_length=variable, acc_tolerance=cfg.acc_tolerance)

    def condition(self) -> dict[str, str]:
        c = self.cfg
        return {"task": c.task, "size": c.size, "file": self.data.path.stem,
                "sha": self.data.digest, "T": str(self.data.x.shape[1]),
                "small": str(c.small_fraction), "seed": str(c.seed)}

    def train_indices(self) -> np.ndarray:
        train = np.flatnonzero(self.split == "train")
        if self.cfg.size == "large":
            return train
        order = np.random.default_rng(self.cfg.seed).permutation(train)
        return np.sort(order[: max(1, round(len(train) * self.cfg.small_fraction))])

    def _dataset(self, idx: np.ndarray) -> TensorDataset:
        d = self.data
        x = torch.from_numpy(np.ascontiguousarray(d.x[idx]))
        if d.classification:
            y = torch.from_numpy(np.searchsorted(self.classes, d.y[idx]).astype(np.int64))
        else:
            y = torch.from_numpy(d.y[idx].astype(np.float32))
            y = y.unsqueeze(-1) if y.ndim == 1 else y
        return TensorDataset(x, y, torch.from_numpy(d.lengths[idx]))

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.train_set = self._dataset(self.train_indices())
        self.val_set = self._dataset(np.flatnonzero(self.split == "val"))
        self.test_set = self._dataset(np.flatnonzero(self.split == "test"))
