"""Your own data: `data=file data.path=my.npz` (or a long-format .csv).

Integer (or string) targets make a classification task (cross-entropy, accuracy); float
targets a regression (MSE). See file_loaders for the format and its checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rnnsweep.data.base import (
    SplitDataConfig,
    TensorDataModule,
    check_data_seed,
    content_hashes,
    shared_counts,
    unique_indices,
)
from rnnsweep.data.comparability import check_learnable, check_split_sizes
from rnnsweep.data.file_loaders import SequenceFile, check_splits, load_sequence_file
from rnnsweep.data.paths import resolve_path
from rnnsweep.data.sizes import train_count
from rnnsweep.data.spec import TaskSpec
from rnnsweep.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class FileDataConfig(SplitDataConfig):
    """val_fraction and test_fraction apply only when the file has no `split`: a seeded
    70/15/15 split, stratified by class."""

    _target_: str = "rnnsweep.data.file.FileDataModule"
    task: str = "file"
    # .npz or .csv; a relative path resolves against the project root.
    path: str = ""
    # Regression: a prediction counts as correct when |error| < tolerance (val_acc).
    acc_tolerance: float = 0.04
    # A file with its own `split` whose splits share identical sequences is refused unless
    # true (the copies are then kept, and reported). Without a `split`, exact duplicates are
    # dropped before the automatic split.
    allow_duplicates: bool = False

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("data.path is missing: data=file needs data.path=<file.npz|.csv>")
        self.check_fractions()
        if self.acc_tolerance <= 0:
            raise ConfigError(f"data.acc_tolerance={self.acc_tolerance} is invalid: must be > 0")
        check_data_seed(self.seed)


def auto_split(data: SequenceFile, val_fraction: float, test_fraction: float,
               seed: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Seeded train/val/test labels of `rows` (default: all), stratified by class for
    classification; rows left out are labelled 'dropped'."""
    from sklearn.model_selection import train_test_split

    n = len(data.y)
    idx = np.arange(n) if rows is None else np.asarray(rows)
    strat = data.y[idx] if data.classification else None
    held = val_fraction + test_fraction
    try:
        train, rest = train_test_split(idx, test_size=held, random_state=seed, stratify=strat)
        strat_rest = data.y[rest] if data.classification else None
        val, test = train_test_split(rest, test_size=test_fraction / held, random_state=seed,
                                     stratify=strat_rest)
    except ValueError as err:
        raise DataError(f"{data.path}: cannot split {n} sequences into train/val/test "
                        f"({err}); add a `split` array") from None
    split = np.full(n, "dropped", dtype=object)
    split[train], split[val], split[test] = "train", "val", "test"
    split = split.astype(str)
    check_splits(data.path, data.y, split, data.classification)
    return split


class FileDataModule(TensorDataModule):
    """Reads and checks the file at construction, so a bad file fails the sweep's preflight."""

    config = FileDataConfig

    def __init__(self, cfg: FileDataConfig) -> None:
        super().__init__(batch_size=cfg.batch_size)
        self.cfg = cfg
        self.data = load_sequence_file(resolve_path(cfg.path))
        d = self.data
        check_learnable(str(d.path), d.x, d.y, d.classification)  # before any split
        hashes = content_hashes(d.x, d.lengths, d.y)
        keep, self.duplicates_dropped = unique_indices(hashes)
        if d.split is None:
            self.split = auto_split(d, cfg.val_fraction, cfg.test_fraction, cfg.seed,
                                    rows=np.asarray(keep))
            if self.duplicates_dropped:
                log.warning("%s: %d exact duplicate sequences dropped before the split",
                            d.path, self.duplicates_dropped)
        else:
            self.split = d.split
            self._check_user_splits(hashes)
        if d.classification:
            self.classes = np.unique(d.y[self.split == "train"])
            out, loss = len(self.classes), "ce"
        else:
            self.classes = None
            out, loss = (1 if d.y.ndim == 1 else d.y.shape[1]), "mse"
        check_split_sizes(str(d.path), {
            **{s: int((self.split == s).sum()) for s in ("train", "val", "test")},
            "small": len(self.train_indices())})
        variable = d.has_lengths and bool((d.lengths < d.x.shape[1]).any())
        self.spec = TaskSpec(input_size=d.x.shape[2], output_size=out, loss=loss,
                             variable_length=variable, acc_tolerance=cfg.acc_tolerance)

    def max_train_len(self) -> int:
        return int(self.data.x.shape[1])

    def _check_user_splits(self, hashes: list[str]) -> None:
        """Identical sequences in two of the file's own splits: refused, or kept and reported
        when data.allow_duplicates is true."""
        by_split = {s: {h for h, sp in zip(hashes, self.split, strict=True) if sp == s}
                    for s in ("train", "val", "test")}
        shared = shared_counts(by_split)
        if not shared:
            return
        what = ", ".join(f"{n} in both {a} and {b}" for a, b, n in shared)
        if not self.cfg.allow_duplicates:
            raise DataError(f"{self.data.path}: identical sequences in two splits ({what}); "
                            "fix the split, or set data.allow_duplicates=true to keep them")
        self.allow_leaks = True
        log.warning("%s: identical sequences in two splits (%s), kept because "
                    "data.allow_duplicates=true", self.data.path, what)

    @classmethod
    def experiment_name(cls, data: Any) -> str:
        """file-<file name>: two data files never share an experiment."""
        path = str(data.get("path") or "")
        return f"file-{Path(path).stem}" if path else "file"

    def condition(self) -> dict[str, str]:
        c = self.cfg
        cond = {"task": c.task, "size": c.size, "file": self.data.path.stem,
                "sha": self.data.digest, "T": str(self.data.x.shape[1])}
        if c.size == "small":  # a large study trains on the whole split: no fraction in it
            cond["small"] = str(c.small_fraction)
        elif c.size != "large":  # a curve point: the training sequences it stands for
            cond["n"] = str(len(self.train_indices()))
        return {**cond, "seed": str(c.seed)}

    def train_indices(self) -> np.ndarray:
        train = np.flatnonzero(self.split == "train")
        if self.cfg.size == "large":
            return train
        order = np.random.default_rng(self.cfg.seed).permutation(train)
        n_small = max(1, round(len(train) * self.cfg.small_fraction))
        # A curve size (a fraction or a count) takes a prefix of the same order: nested sizes.
        return np.sort(order[: train_count(self.cfg.size, n_small, len(train))])

    def split_indices(self) -> dict[str, np.ndarray]:
        """The file's rows in each split, logged on the study's parent run (split/indices.npz)
        so a baseline can use the same split: `train`, `val`, `test`; `trained_on`, the
        rows this study trained on (the `small` subset of train, or all of it); `dropped`,
        exact duplicates left out before an automatic split; `file_sha`, the file's digest.
        Rows index the file's arrays (a .csv: its sequences in sorted sequence_id order)."""
        rows = {s: np.flatnonzero(self.split == s) for s in ("train", "val", "test", "dropped")}
        return {"train": rows["train"], "val": rows["val"], "test": rows["test"],
                "trained_on": self.train_indices(), "dropped": rows["dropped"],
                "file_sha": np.array(self.data.digest)}

    def _dataset(self, idx: np.ndarray) -> TensorDataset:
        d = self.data
        x = torch.from_numpy(np.ascontiguousarray(d.x[idx]))
        if d.classification:
            y = torch.from_numpy(np.searchsorted(self.classes, d.y[idx]).astype(np.int64))
        else:
            y = torch.from_numpy(d.y[idx].astype(np.float32))
            y = y.unsqueeze(-1) if y.ndim == 1 else y
        return TensorDataset(x, y, torch.from_numpy(d.lengths[idx]))

    def build(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        return (self._dataset(self.train_indices()),
                self._dataset(np.flatnonzero(self.split == "val")),
                self._dataset(np.flatnonzero(self.split == "test")))
