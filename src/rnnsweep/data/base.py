"""What every task shares: its output contract (TaskSpec) and tensor-backed loaders."""

from __future__ import annotations

from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)


@dataclass(frozen=True)
class TaskSpec:
    """How the model's head and loss must look for a task."""

    input_size: int
    output_size: int
    loss: str  # "mse" (regression), "bce" (multi-label sigmoid), "ce" (classification)
    per_step: bool = False  # predict at every step (True) or once per sequence (False)
    variable_length: bool = False  # batches carry real lengths; padding must be masked
    acc_tolerance: float = 0.04  # regression: a prediction is correct when |error| < tolerance


class TensorDataModule(pl.LightningDataModule):
    """Holds whole splits as tensors and serves them as index-sliced batches.

    A BatchSampler over a TensorDataset slices each batch in one indexing op instead of
    collating samples one by one, which keeps the loop close to bare PyTorch speed.
    """

    spec: TaskSpec

    def __init__(self, batch_size: int, shuffle_seed: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.shuffle_seed = shuffle_seed
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def condition(self) -> dict[str, str]:
        """What identifies this dataset, in order; used to name studies."""
        raise NotImplementedError

    def _loader(self, ds: TensorDataset | None, shuffle: bool) -> DataLoader:
        if ds is None:
            raise RuntimeError("setup() must run before the loaders are requested")
        if shuffle:
            gen = torch.Generator().manual_seed(self.shuffle_seed)
            sampler = RandomSampler(ds, generator=gen)
        else:
            sampler = SequentialSampler(ds)
        batches = BatchSampler(sampler, batch_size=self.batch_size, drop_last=False)
        return DataLoader(ds, sampler=batches, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


def full_lengths(n: int, seq_len: int) -> torch.Tensor:
    return torch.full((n,), seq_len, dtype=torch.long)
