"""Counting with a^n b^n (Weiss, Goldberg & Yahav 2018): next-symbol-set prediction.

Input: S a^n b^n, one-hot over {S, a, b}. Target at each step: the set of symbols that may
follow, as three sigmoid outputs over {a, b, end}: after S only a; after an a, a or b; after
the k-th b, b while k < n, else end. Getting every step right needs an exact count of n.

a^n b^n has one string per n, so held-out strings can only lie beyond the training range.
Both sizes share one validation band (the `val_span` values of n just above the larger
training range) and one test band (the next `test_span`), so early stopping, the objective
and pruning select for extrapolation, and small and large are scored on the same strings.

Short strings. With the loss averaged over the real steps of a batch, the string of n
carries 2n + 1 steps: on n = 1..100 the strings n = 1..3 hold 0.15 % of the loss, and the
validation band never sees them, so neither training nor selection cares whether they are
right. `loss_weighting: string` gives every string the same weight (its steps' mean, then
the mean over strings); `val_short: k` adds the k shortest training strings to validation
(a^n b^n has no other short strings, so these repeat training strings by design).

Test metrics (checked up to count_max; a figure of count_max means no miss up to it):
- test_count_strict: the largest N such that every n from n_min to N is exact (n_min - 1
  when n_min is not);
- test_count_beyond: the largest N such that every n from the top training n + 1 to N is
  exact (the top training n when the first string past training is not): the training
  range is not checked;
- test_accepts_anbn: 1 when a^accept_n b^accept_n is accepted as Weiss et al. accept a
  string (their published code, tech-srl/counting_dimensions, RNNTokenPredictor.classify_word):
  at every step the symbol that actually follows is predicted possible, and after the last
  b the end; nothing is required of the symbols that do not follow;
- test_count_limit (older, kept for comparison with earlier sweeps): 0 unless the whole
  training range is exact (test_train_range_exact), else the first n past it not exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from rnnsweep.data.base import DataConfig, TensorDataModule, check_data_seed
from rnnsweep.data.spec import TaskSpec
from rnnsweep.errors import ConfigError, DataError
from rnnsweep.losses import sequence_weights

IN_S, IN_A, IN_B = 0, 1, 2  # input one-hot channels
OUT_A, OUT_B, OUT_END = 0, 1, 2  # target channels
WEIGHTINGS = ("step", "string")


@dataclass(frozen=True)
class AnbnTaskSpec(TaskSpec):
    # Each string weighs the same in the loss, whatever its length (RecurrentLitModule reads
    # it when present; data.loss_weighting=string).
    per_sequence_loss: bool = False


@dataclass
class AnbnDataConfig(DataConfig):
    _target_: str = "rnnsweep.data.anbn.AnbnDataModule"
    task: str = "anbn"
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
    # "step": every real step weighs the same in the loss; "string": every string does.
    loss_weighting: str = "step"
    # The shortest training strings (n_min, n_min + 1, ...) also in the validation set.
    val_short: int = 0
    # test_accepts_anbn: the string a^accept_n b^accept_n, and the probability above which
    # a symbol counts as predicted possible (the paper's softmax used a reject threshold;
    # these outputs are independent sigmoids, whose decision threshold is 0.5).
    accept_n: int = 1000
    accept_threshold: float = 0.5

    def __post_init__(self) -> None:
        for key in ("n_min", "repeats", "val_span", "test_span", "count_chunk", "accept_n"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}={getattr(self, key)} is invalid: must be >= 1")
        if self.loss_weighting not in WEIGHTINGS:
            raise ConfigError(f"data.loss_weighting={self.loss_weighting!r} is invalid: one "
                              f"of {', '.join(WEIGHTINGS)}")
        if not 0.0 < self.accept_threshold < 1.0:
            raise ConfigError(f"data.accept_threshold={self.accept_threshold} is invalid: "
                              "must lie strictly between 0 and 1")
        shortest = min(self.n_max_small, self.n_max_large) - self.n_min + 1
        if not 0 <= self.val_short <= shortest:
            raise ConfigError(f"data.val_short={self.val_short} is invalid: must be 0.."
                              f"{max(shortest, 0)} (the strings of the smaller training range)")
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


def next_symbols(n: int) -> np.ndarray:
    """Per step of S a^n b^n, the output channel of the symbol that actually follows."""
    return np.array([OUT_A] * n + [OUT_B] * n + [OUT_END])


@torch.no_grad()
def accepts(net: nn.Module, n: int, threshold: float = 0.5) -> bool:
    """Weiss et al.'s acceptance of a^n b^n: at every step the symbol that actually follows
    (and after the last b, the end) has probability above `threshold`."""
    was_training = net.training
    net.eval()
    try:
        x, _, lengths = make_batch([n])
        out = net(x.to(next(net.parameters()).device), lengths).cpu()[0]
        follows = out[torch.arange(2 * n + 1), torch.from_numpy(next_symbols(n))]
        return bool((follows > math.log(threshold / (1 - threshold))).all())
    finally:
        net.train(was_training)


class AnbnDataModule(TensorDataModule):

    config = AnbnDataConfig
    curves = False  # sizes are string lengths
    # Nothing to draw: a^n b^n has one string per n, and the splits are fixed ranges of n, so
    # data.seed changes no split and a re-evaluation seed keeps the study's data.
    draws_data = False

    def __init__(self, cfg: AnbnDataConfig) -> None:
        super().__init__(batch_size=cfg.batch_size)
        self.cfg = cfg
        self.spec = AnbnTaskSpec(input_size=3, output_size=3, loss="bce", per_step=True,
                                 variable_length=True,
                                 per_sequence_loss=cfg.loss_weighting == "string")
        # The short validation strings are training strings by design (a^n b^n has one
        # string per n); build() checks that nothing else is shared.
        self.allow_leaks = cfg.val_short > 0

    @property
    def n_max(self) -> int:
        return self.cfg.n_max_small if self.cfg.size == "small" else self.cfg.n_max_large

    def max_train_len(self) -> int:
        return 2 * self.n_max + 1

    def condition(self) -> dict[str, str]:
        c = self.cfg
        val, test = self.bands()
        out = {"task": c.task, "size": c.size, "n": f"{c.n_min}-{self.n_max}",
               "T": str(2 * self.n_max + 1), "reps": str(c.repeats),
               "val": f"{val[0]}-{val[-1]}", "test": f"{test[0]}-{test[-1]}",
               "max": str(c.count_max)}
        # Only where set, so the studies of earlier sweeps keep their names.
        if c.val_short:
            out["val"] = f"{c.n_min}-{c.n_min + c.val_short - 1}+{out['val']}"
        if c.loss_weighting != "step":
            out["wt"] = c.loss_weighting
        return out

    def bands(self) -> tuple[np.ndarray, np.ndarray]:
        """The validation and test values of n: one pair for both sizes, above training."""
        c = self.cfg
        top = max(c.n_max_small, c.n_max_large)
        val = np.arange(top + 1, top + c.val_span + 1)
        return val, np.arange(val[-1] + 1, val[-1] + c.test_span + 1)

    def build(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        c = self.cfg
        in_range = np.arange(c.n_min, self.n_max + 1)
        band, test = self.bands()
        short = np.arange(c.n_min, c.n_min + c.val_short)
        val = np.concatenate([short, band])
        shared = (set(in_range) & set(band)) | (set(test) & (set(in_range) | set(val)))
        if shared:  # the leak check is waived for the short strings only
            raise DataError(f"data.task=anbn: split leak: n = {sorted(shared)} in two splits")
        return (TensorDataset(*make_batch(np.repeat(in_range, c.repeats))),
                TensorDataset(*make_batch(val)), TensorDataset(*make_batch(test)))

    def baseline(self) -> dict[str, float]:
        """As TensorDataModule.baseline, with the loss weighted as the cells' loss is."""
        out = super().baseline()
        if self.spec.per_sequence_loss:
            assert self.train_set is not None and self.val_set is not None
            _, y_tr, len_tr = self.train_set.tensors
            _, y_va, len_va = self.val_set.tensors
            real = torch.arange(y_tr.shape[1])[None, :] < len_tr[:, None]
            p = y_tr[real].mean(0).clamp(1e-6, 1 - 1e-6)
            logits = torch.log(p / (1 - p)).expand_as(y_va)
            steps = F.binary_cross_entropy_with_logits(logits, y_va, reduction="none").sum(-1)
            out["baseline_loss"] = float((steps * sequence_weights(len_va, y_va.shape[1])).sum())
        return out

    def fitted_baselines(self) -> dict[str, float]:
        """The fitted baselines' losses average over steps: with strings weighted equally
        they would not be the cells' test_loss, so only their accuracies are kept."""
        out = super().fitted_baselines()
        if self.spec.per_sequence_loss:
            out = {k: v for k, v in out.items() if not k.endswith("_test_loss")}
        return out

    def extra_test_metrics(self, net: nn.Module) -> dict[str, float]:
        """The count figures of the module docstring, from the network's own outputs."""
        c = self.cfg
        first = first_failure(net, c.n_min, c.count_max, c.count_chunk)
        exact = first > self.n_max
        beyond = first if exact else first_failure(net, self.n_max + 1, c.count_max,
                                                     c.count_chunk)
        return {"test_count_strict": float(first - 1),
                "test_count_beyond": float(beyond - 1),
                "test_accepts_anbn": float(accepts(net, c.accept_n, c.accept_threshold)),
                "test_count_limit": float(first if exact else 0),
                "test_train_range_exact": float(exact)}
