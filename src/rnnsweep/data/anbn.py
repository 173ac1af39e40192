"""Counting with a^n b^n (Weiss, Goldberg & Yahav 2018): next-symbol-set prediction.

Input: S a^n b^n, one-hot over {S, a, b}. Target at each step: the set of symbols that may
follow, as three sigmoid outputs over {a, b, end}: after S only a; after an a, a or b; after
the k-th b, b while k < n, else end. Getting every step right needs an exact count of n.

a^n b^n has one string per n, so held-out strings can only lie beyond the training range.
Both sizes share one validation band (the `val_span` values of n just above the larger
training range) and one test band (the next `test_span`), so early stopping, the objective
and pruning select for extrapolation, and small and large are scored on the same strings.
`test_count_limit` is searched from n_min: 0 unless the whole training range is predicted
exactly, else the first n past it whose string is not predicted exactly (up to count_max).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from rnnsweep.data.base import TaskSpec, TensorDataModule, check_data_seed
from rnnsweep.errors import ConfigError

IN_S, IN_A, IN_B = 0, 1, 2  # input one-hot channels
OUT_A, OUT_B, OUT_END = 0, 1, 2  # target channels


@dataclass
class AnbnDataConfig:
    task: str = "anbn"
    size: str = "small"
    n_min: int = 1
    # Training range n_min..n_max_<size>: small stops earlier, so it must extrapolate further.
    n_max_small: int = 50
    n_max_large: int = 100
    # Copies of each training string per epoch: more optimiser steps per epoch.
    repeats: int = 4
    # Bands above max(n_max_small, n_max_large), shared by both sizes.
    val_span: int = 20
    test_span: int = 50
    count_max: int = 1000
    # Strings checked per batch while searching for the first miss.
    count_chunk: int = 50
    seed: int = 1234
    batch_size: int = 32

    def __post_init__(self) -> None:
        for key in ("n_min", "repeats", "val_span", "test_span", "count_chunk"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}={getattr(self, key)} is invalid: must be >= 1")
        for key in ("n_max_small", "n_max_large"):
            if getattr(self, key) < self.n_min:
                raise ConfigError(f"data.{key}={getattr(self, key)} is invalid: "
                                  f"must be >= data.n_min ({self.n_min})")
        top = max(self.n_max_small, self.n_max_large) + self.val_span + self.test_span
        if self.count_max <= top:
            raise ConfigError(f"data.count_max={self.count_max} is invalid: must be > the "
                              f"top of the test band ({top})")
        check_data_seed(self.seed)


def encode(n: int) -> tuple[np.ndarray, np.ndarray]:
    """x (2n+1, 3) one-hot of S a^n b^n and y (2n+1, 3) the allowed next symbols."""
    t = 2 * n + 1
    x = np.zeros((t, 3), dtype=np.float32)
    y = np.zeros((t, 3), dtype=np.float32)
    x[0, IN_S] = 1
    x[1 : n + 1, IN_A] = 1
    x[n + 1 :, IN_B] = 1
    y[0, OUT_A] = 1  # after S: a (n >= 1)
    y[1 : n + 1, OUT_A] = 1  # after an a: a or b
    y[1 : n + 1, OUT_B] = 1
    y[n + 1 : 2 * n, OUT_B] = 1  # after the k-th b, k < n: b
    y[2 * n, OUT_END] = 1  # after the n-th b: end
    return x, y


def make_batch(ns: list[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero-padded x, y and lengths for the strings with these n."""
    ns = [int(n) for n in ns]
    t = 2 * max(ns) + 1
    x = np.zeros((len(ns), t, 3), dtype=np.float32)
    y = np.zeros_like(x)
    for i, n in enumerate(ns):
        xi, yi = encode(n)
        x[i, : len(xi)], y[i, : len(yi)] = xi, yi
    lengths = torch.tensor([2 * n + 1 for n in ns], dtype=torch.long)
    return torch.from_numpy(x), torch.from_numpy(y), lengths


@torch.no_grad()
def exact_strings(net: nn.Module, ns: list[int]) -> np.ndarray:
    """Per string: True when every step's thresholded outputs equal the target set."""
    x, y, lengths = make_batch(ns)
    device = next(net.parameters()).device
    out = net(x.to(device), lengths).cpu()
    wrong = ((out > 0).float() != y).any(-1)  # (B, T)
    real = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    return (~(wrong & real).any(-1)).numpy()


def first_failure(net: nn.Module, start: int, stop: int, chunk: int) -> int:
    """The first n in [start, stop] whose string is not predicted exactly; stop + 1 if none.

    Checks in chunks of increasing n, so a model that fails early costs one short batch.
    """
    was_training = net.training
    net.eval()
    try:
        for lo in range(start, stop + 1, chunk):
            ns = list(range(lo, min(lo + chunk, stop + 1)))
            ok = exact_strings(net, ns)
            if not ok.all():
                return ns[int(np.argmin(ok))]
        return stop + 1
    finally:
        net.train(was_training)


class AnbnDataModule(TensorDataModule):
    def __init__(self, cfg: AnbnDataConfig) -> None:
        super().__init__(batch_size=cfg.batch_size)
        self.cfg = cfg
        self.spec = TaskSpec(input_size=3, output_size=3, loss="bce",
                             per_step=True, variable_length=True)

    @property
    def n_max(self) -> int:
        return self.cfg.n_max_small if self.cfg.size == "small" else self.cfg.n_max_large

    def max_train_len(self) -> int:
        return 2 * self.n_max + 1

    def condition(self) -> dict[str, str]:
        c = self.cfg
        val, test = self.bands()
        return {"task": c.task, "size": c.size, "n": f"{c.n_min}-{self.n_max}",
                "T": str(2 * self.n_max + 1), "reps": str(c.repeats),
                "val": f"{val[0]}-{val[-1]}", "test": f"{test[0]}-{test[-1]}",
                "max": str(c.count_max)}

    def bands(self) -> tuple[np.ndarray, np.ndarray]:
        """The validation and test values of n: one pair for both sizes, above training."""
        c = self.cfg
        top = max(c.n_max_small, c.n_max_large)
        val = np.arange(top + 1, top + c.val_span + 1)
        return val, np.arange(val[-1] + 1, val[-1] + c.test_span + 1)

    def build(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        c = self.cfg
        in_range = np.arange(c.n_min, self.n_max + 1)
        val, test = self.bands()
        return (TensorDataset(*make_batch(np.repeat(in_range, c.repeats))),
                TensorDataset(*make_batch(val)), TensorDataset(*make_batch(test)))

    def extra_test_metrics(self, net: nn.Module) -> dict[str, float]:
        """test_count_limit: 0 unless every training string is predicted exactly; then the
        first n past the training range that is not (count_max + 1 if none up to it)."""
        c = self.cfg
        first = first_failure(net, c.n_min, c.count_max, c.count_chunk)
        exact = first > self.n_max
        return {"test_count_limit": float(first if exact else 0),
                "test_train_range_exact": float(exact)}
