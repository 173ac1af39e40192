"""What every task shares: tensor-backed loaders (its output contract: data.spec.TaskSpec), the
content-hash leak check, the trivial predictor's loss and the run's data-order stream."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from rnnsweep.data.spec import TaskSpec
from rnnsweep.errors import ConfigError, DataError
from rnnsweep.losses import loss_kind, step_mask

# Stream ids under a run's seed: initialisation/dropout come from torch's global seed;
# the data order from its own child stream, so neither shifts the other.
ORDER_STREAM = 1
# A re-evaluation seed's own data draw (rnnsweep.search.reeval): a third, independent stream.
DRAW_STREAM = 2
# The eval-mode training subset: one fixed draw, the same for every run of every study, so
# gaps compare across cells and trials.
TRAIN_EVAL_SEED = 20181


def order_seed(run_seed: int) -> int:
    """The shuffle seed of a run: an independent child stream of the run's seed."""
    return int(np.random.SeedSequence(run_seed, spawn_key=(ORDER_STREAM,)).generate_state(1)[0])


def draw_seed(data_seed: int, run_seed: int) -> int:
    """The data seed of a run that draws its own data (a re-evaluation seed of a task that
    generates its data): a child stream of the run's seed and the study's data.seed.

    The run's seed makes each re-evaluation seed's draw independent of the others; data.seed
    is kept in the entropy so that changing it still changes every draw. Both are shared by
    the studies of one sweep (every cell, every size), so re-evaluation seed k of each cell
    sees the same draw: the cell comparison stays paired. The result is a 32-bit value >= 0,
    a valid data.seed (check_data_seed)."""
    entropy = [data_seed, run_seed]
    return int(np.random.SeedSequence(entropy, spawn_key=(DRAW_STREAM,)).generate_state(1)[0])


def check_data_seed(seed: int) -> None:
    """data.seed feeds numpy's SeedSequence (and rng permutations), which take no negative
    numbers: refused in the task's config check, before anything is created."""
    if seed < 0:
        raise ConfigError(f"data.seed={seed} is invalid: must be an integer >= 0")


def split_seeds(data_seed: int, n: int) -> list[int]:
    """n independent generator seeds for data generation (SeedSequence.spawn): neighbouring
    data seeds share no values, unlike seed, seed + 1, seed + 2."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(data_seed).spawn(n)]


def content_hashes(x: np.ndarray, lengths: np.ndarray, y: np.ndarray,
                   per_step: bool = False) -> list[str]:
    """One content hash per sequence: its real steps of input and its target (per-step
    targets: their real steps), padding ignored."""
    out = []
    for i in range(len(x)):
        n = int(lengths[i])
        h = hashlib.sha1(x[i, :n].tobytes())
        h.update(np.asarray(y[i, :n] if per_step else y[i]).tobytes())
        out.append(h.hexdigest())
    return out


def sequence_hashes(ds: TensorDataset, per_step: bool) -> list[str]:
    """content_hashes of a dataset of (x, y, lengths)."""
    x, y, lengths = (t.numpy() for t in ds.tensors)
    return content_hashes(x, lengths, y, per_step)


def unique_indices(items: list[str]) -> tuple[list[int], int]:
    """Indices of the first copy of each distinct item (np.unique's first occurrences), and
    how many copies were dropped."""
    keep = sorted(np.unique(np.asarray(items), return_index=True)[1].tolist()) if items else []
    return keep, len(items) - len(keep)


def shared_counts(hashes: dict[str, set[str]]) -> list[tuple[str, str, int]]:
    """(split a, split b, items in both) for every pair of splits that share content."""
    pairs = ((a, b, len(hashes[a] & hashes[b])) for a, b in itertools.combinations(hashes, 2))
    return [(a, b, n) for a, b, n in pairs if n]


@dataclass
class DataConfig:
    """The keys every task shares; a task's config dataclass extends it with its own.
    conf/data/<task>.yaml holds the values (tests/test_schema_defaults.py checks these)."""

    # The data module class (a TensorDataModule), as cells and optimisers name theirs.
    _target_: str = "???"
    task: str = "???"
    # small | large, or a learning-curve point (rnnsweep.data.sizes) where the task allows.
    size: str = "small"
    seed: int = 1234
    batch_size: int = 32


@dataclass
class SplitDataConfig(DataConfig):
    """A task that splits a fixed set of sequences (chorales, a user's file): the fractions
    held out for validation and test, and the share of training that `small` keeps."""

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # small trains on this fraction of the training split; large on all of it.
    small_fraction: float = 0.25

    def check_fractions(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            v = getattr(self, key)
            if not 0.0 < v < 1.0:
                raise ConfigError(f"data.{key}={v} is invalid: must be in (0, 1)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                f"data.val_fraction + data.test_fraction = "
                f"{self.val_fraction + self.test_fraction} is invalid: must be < 1")
        if not 0.0 < self.small_fraction <= 1.0:
            raise ConfigError(f"data.small_fraction={self.small_fraction} is invalid: "
                              "must be in (0, 1]")


class TensorDataModule(pl.LightningDataModule):
    """Holds whole splits as tensors and serves them as index-sliced batches.

    The sampler yields whole batches of indices (a slice, or an index tensor when shuffling),
    so each batch is one indexing op on the stored tensors, with no per-sample collation.
    Tasks implement `build()`; `setup()` builds once, then refuses a split leak.
    """

    spec: TaskSpec
    # The task's typed config (a DataConfig), which `data` is checked against.
    config: type = DataConfig
    # data.size may be a learning-curve point (rnnsweep.data.sizes): a fraction or a count.
    curves = True
    # True only where the user allowed copies across their own splits (data=file).
    allow_leaks = False
    # True where data.seed draws the sequences themselves (a task that generates its data):
    # each re-evaluation seed then trains and is tested on a draw of its own, so the spread of
    # the headline numbers covers the data too (rnnsweep.search.reeval). False where the data
    # are fixed (a corpus, a user's file: data.seed at most picks their split, and every run
    # keeps the one data set) or nothing is random (anbn).
    draws_data = False

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        # Set per run (train_model) from the run's seed: the data order belongs to the run.
        self.order_seed = order_seed(0)
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None
        self._train_eval: TensorDataset | None = None

    def condition(self) -> dict[str, str]:
        """What identifies this dataset, in order; used to name studies."""
        raise NotImplementedError

    @classmethod
    def experiment_name(cls, data: Any) -> str:
        """The MLflow experiment (and reports/ folder) of the task's studies, from its
        `data` node alone (the report names it without building the data): the task's name."""
        return str(data.get("task"))

    def data_seed(self) -> int | None:
        """The data.seed these data were built with; None for a task without one."""
        seed = getattr(getattr(self, "cfg", None), "seed", None)
        return None if seed is None else int(seed)

    def build(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        """The task's train, validation and test sets."""
        raise NotImplementedError

    def max_train_len(self) -> int | None:
        """The longest training sequence, when known without building the data (the
        preflight's memory estimate); None: unknown until the data are built."""
        return None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val, test = self.build()
        leaks = shared_counts({name: set(sequence_hashes(ds, self.spec.per_step))
                               for name, ds in (("train", train), ("val", val), ("test", test))})
        if leaks and not self.allow_leaks:
            what = ", ".join(f"{n} sequences in both {a} and {b}" for a, b, n in leaks)
            task = self.condition().get("task", type(self).__name__)
            raise DataError(f"data.task={task}: split leak: {what}")
        self.train_set, self.val_set, self.test_set = train, val, test

    def train_eval_set(self) -> TensorDataset:
        """A fixed random subset of the training set, the size of the validation set (or all
        of the training set when smaller), scored in eval mode at each validation. Drawn,
        not the first rows: a split's order (anbn's shortest strings first, a user's file
        sorted by class) would bias the gap."""
        if self._train_eval is None:
            if self.train_set is None or self.val_set is None:
                raise RuntimeError("setup() must run before the loaders are requested")
            n = min(len(self.train_set), len(self.val_set))
            gen = torch.Generator().manual_seed(TRAIN_EVAL_SEED)
            rows = torch.randperm(len(self.train_set), generator=gen)[:n].sort().values
            self._train_eval = TensorDataset(*(t[rows] for t in self.train_set.tensors))
        return self._train_eval

    def _loader(self, ds: TensorDataset | None, shuffle: bool) -> DataLoader:
        if ds is None:
            raise RuntimeError("setup() must run before the loaders are requested")
        gen = torch.Generator().manual_seed(self.order_seed) if shuffle else None
        batches = TensorBatches(len(ds), self.batch_size, gen)
        return DataLoader(ds, sampler=batches, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        # Loader 1: the training subset in eval mode (no dropout), for an unbiased gap.
        return [self._loader(self.val_set, shuffle=False),
                self._loader(self.train_eval_set(), shuffle=False)]

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def batches_per_epoch(self) -> int:
        self.setup()
        assert self.train_set is not None
        return math.ceil(len(self.train_set) / self.batch_size)

    def baseline(self) -> dict[str, float]:
        """The trivial predictor fitted on the training set, scored on the validation set:
        the training mean (regression), per-output frequencies (multi-label) or the class
        prior (classification). `baseline_acc` is its accuracy (the majority-class rate)."""
        self.setup()
        assert self.train_set is not None and self.val_set is not None
        _, y_tr, len_tr = self.train_set.tensors
        _, y_va, len_va = self.val_set.tensors
        if self.spec.per_step:  # real steps only
            y_tr = y_tr[step_mask(len_tr, y_tr.shape[1])]
            y_va = y_va[step_mask(len_va, y_va.shape[1])]
        loss, acc = loss_kind(self.spec.loss).trivial(y_tr, y_va, self.spec)
        return {"baseline_loss": loss, "baseline_acc": acc}

    def fitted_baselines(self) -> dict[str, float]:
        """Non-recurrent models (a linear model, 1-NN) fitted on the training set and scored
        on the test set like the cells' test_loss / test_acc: `fitted_<model>_<metric>`
        (rnnsweep.data.fitted_baselines). Unlike `baseline()`, these are test-set figures."""
        from rnnsweep.data.fitted_baselines import fitted_baselines

        return fitted_baselines(self)


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
