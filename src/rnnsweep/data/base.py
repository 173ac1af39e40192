"""What every task shares: its output contract (TaskSpec) and tensor-backed loaders."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset


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

    The sampler yields whole batches of indices (a slice, or an index tensor when shuffling),
    so each batch is one indexing op on the stored tensors, with no per-sample collation.
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
        gen = torch.Generator().manual_seed(self.shuffle_seed) if shuffle else None
        batches = TensorBatches(len(ds), self.batch_size, gen)
        return DataLoader(ds, sampler=batches, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


class TensorBatches(Sampler):
    """Whole batches of indices: slices in order, or slices of one permutation per epoch.

    Same order as BatchSampler(RandomSampler(generator=gen)) (one randperm per epoch), but
    an index tensor costs one gather where a list of ints is converted element by element,
    and an in-order slice is a view with no copy at all.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator | None) -> None:
        self.n, self.batch_size, self.generator = n, batch_size, generator

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[slice | torch.Tensor]:
        b = self.batch_size
        if self.generator is None:
            for i in range(0, self.n, b):
                yield slice(i, min(i + b, self.n))
            return
        perm = torch.randperm(self.n, generator=self.generator)
        for i in range(0, self.n, b):
            yield perm[i : i + b]


def full_lengths(n: int, seq_len: int) -> torch.Tensor:
    return torch.full((n,), seq_len, dtype=torch.long)
