"""The adding problem (Hochreiter & Schmidhuber 1997): sum the two marked values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rnnsweep.data.base import (
    DataConfig,
    TensorDataModule,
    check_data_seed,
    split_seeds,
)
from rnnsweep.data.sizes import train_count
from rnnsweep.data.spec import TaskSpec
from rnnsweep.errors import ConfigError


@dataclass
class AddingDataConfig(DataConfig):
    _target_: str = "rnnsweep.data.adding.AddingDataModule"
    task: str = "adding"
    seq_len: int = 50
    n_train_small: int = 400
    n_train_large: int = 4000
    n_val: int = 1000
    n_test: int = 1000
    batch_size: int = 64
    acc_tolerance: float = 0.04
    # sd of Gaussian noise added to every target: with noise a net can memorise its
    # training targets, so the small condition can overfit (the noiseless rule cannot).
    noise_sd: float = 0.0

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise ConfigError(f"data.seq_len={self.seq_len} is invalid: must be >= 2")
        for key in ("n_train_small", "n_train_large", "n_val", "n_test"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}={getattr(self, key)} is invalid: must be >= 1")
        if not self.noise_sd >= 0:
            raise ConfigError(f"data.noise_sd={self.noise_sd} is invalid: must be >= 0")
        check_data_seed(self.seed)


def generate_adding(
    n: int, seq_len: int, seed: int, noise_sd: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """n sequences of shape (seq_len, 2): value ~ U[0,1] and a marker, one per half.

    Returns x (n, seq_len, 2) float32 and y (n,) float32, the sum of the marked values
    plus N(0, noise_sd^2) noise.
    """
    rng = np.random.default_rng(seed)
    values = rng.random((n, seq_len), dtype=np.float32)
    half = seq_len // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, seq_len, size=n)
    markers = np.zeros((n, seq_len), dtype=np.float32)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = values[rows, first] + values[rows, second]
    if noise_sd > 0:
        y = y + rng.normal(0.0, noise_sd, size=n)
    return x, y.astype(np.float32)


class AddingDataModule(TensorDataModule):
    """small and large draw training sets from one seed (small is a prefix of large) and
    share one fixed validation and one fixed test set, so only the training size differs."""

    config = AddingDataConfig

    # Every split is a random draw from data.seed: a re-evaluation seed draws its own.
    draws_data = True

    def __init__(self, cfg: AddingDataConfig) -> None:
        super().__init__(batch_size=cfg.batch_size)
        self.cfg = cfg
        self.spec = TaskSpec(input_size=2, output_size=1, loss="mse",
                             acc_tolerance=cfg.acc_tolerance)
        _ = self.n_train  # a curve size beyond the large set is refused before anything runs

    @property
    def n_train(self) -> int:
        return train_count(self.cfg.size, self.cfg.n_train_small, self.cfg.n_train_large)

    def max_train_len(self) -> int:
        return self.cfg.seq_len

    def condition(self) -> dict[str, str]:
        c = self.cfg
        cond = {"task": c.task, "size": c.size, "T": str(c.seq_len), "n": str(self.n_train)}
        if c.noise_sd:
            cond["noise"] = f"{c.noise_sd:g}"
        return {**cond, "seed": str(c.seed)}

    def build(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        c = self.cfg
        # Independent streams per split: the val/test sets never depend on the size, and
        # neighbouring data seeds share no values.
        train_seed, val_seed, test_seed = split_seeds(c.seed, 3)
        n_pool = max(c.n_train_small, c.n_train_large)  # every size is a prefix of one draw
        x, y = generate_adding(n_pool, c.seq_len, train_seed, c.noise_sd)
        return (
            _dataset(x[: self.n_train], y[: self.n_train], c.seq_len),
            _dataset(*generate_adding(c.n_val, c.seq_len, val_seed, c.noise_sd), c.seq_len),
            _dataset(*generate_adding(c.n_test, c.seq_len, test_seed, c.noise_sd), c.seq_len),
        )


def _dataset(x: np.ndarray, y: np.ndarray, seq_len: int) -> TensorDataset:
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y).unsqueeze(-1)
    return TensorDataset(xt, yt, torch.full((len(xt),), seq_len, dtype=torch.long))
