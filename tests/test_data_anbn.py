import numpy as np
import pytest
import torch
from torch import nn

from rnnsweep.data.anbn import (
    OUT_A,
    OUT_B,
    OUT_END,
    AnbnDataConfig,
    AnbnDataModule,
    encode,
    first_failure,
)
from rnnsweep.errors import ConfigError


def test_targets_follow_the_next_symbol_sets():
    n = 3
    x, y = encode(n)
    assert x.shape == y.shape == (2 * n + 1, 3)
    assert (x.sum(1) == 1).all()  # one-hot inputs: S a a a b b b
    assert x.argmax(1).tolist() == [0, 1, 1, 1, 2, 2, 2]
    sets = [{k for k in (OUT_A, OUT_B, OUT_END) if row[k]} for row in y]
    assert sets == [{OUT_A}, {OUT_A, OUT_B}, {OUT_A, OUT_B}, {OUT_A, OUT_B},
                    {OUT_B}, {OUT_B}, {OUT_END}]


class Counter(nn.Module):
    """A hand-written exact counter (correct up to n = `limit`): the metric's reference."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        a = x[..., 1].cumsum(1)
        b = x[..., 2].cumsum(1)
        n_total = a[:, -1:]  # padding is zero, so this is n
        out = torch.full_like(x, -1.0)
        in_a = b == 0
        out[..., OUT_A] = torch.where(in_a, 1.0, -1.0)
        out[..., OUT_B] = torch.where((a > 0) & (b < a), 1.0, -1.0)
        out[..., OUT_END] = torch.where((b == a) & (b > 0), 1.0, -1.0)
        broken = (n_total > self.limit).expand_as(b) & (b == a) & (b > 0)
        out[..., OUT_END] = torch.where(broken, -1.0, out[..., OUT_END])
        return out


def test_count_limit_is_the_first_n_past_training_that_fails():
    assert first_failure(Counter(limit=37), start=11, stop=100, chunk=8) == 38
    # Never fails within the checked range: reported as stop + 1.
    assert first_failure(Counter(limit=10_000), start=11, stop=60, chunk=25) == 61
    # Fails right after the training range.
    assert first_failure(Counter(limit=5), start=11, stop=60, chunk=25) == 11


class WrongAt(Counter):
    """An exact counter that is wrong on the strings with n in `wrong` only."""

    def __init__(self, wrong: set[int]) -> None:
        super().__init__(limit=10_000)
        self.wrong = wrong

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = super().forward(x, lengths)
        for i, length in enumerate(lengths.tolist()):
            if (length - 1) // 2 in self.wrong:
                out[i, 0] = -out[i, 0]
        return out


CFG = dict(n_max_small=6, n_max_large=8, val_span=3, test_span=4, count_max=40)


def test_counter_reference_is_exact_on_the_training_strings():
    dm = AnbnDataModule(AnbnDataConfig(**CFG))
    dm.setup()
    x, y, lengths = dm.train_set.tensors
    out = Counter(limit=100)(x, lengths)
    real = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    assert (((out > 0).float() == y).all(-1) | ~real).all()
    assert dm.extra_test_metrics(Counter(limit=100)) == {
        "test_count_limit": 41.0, "test_train_range_exact": 1.0}


@pytest.mark.parametrize("size", ["small", "large"])
def test_count_limit_is_zero_unless_the_whole_training_range_is_exact(size):
    dm = AnbnDataModule(AnbnDataConfig(size=size, **CFG))
    top = dm.n_max
    # Never counts at all: 0 on both sizes (no floor that depends on the size).
    assert dm.extra_test_metrics(Counter(limit=0))["test_count_limit"] == 0.0
    # Wrong inside the training range but right beyond it: still 0.
    assert dm.extra_test_metrics(WrongAt({3}))["test_count_limit"] == 0.0
    assert dm.extra_test_metrics(WrongAt({1, top}))["test_count_limit"] == 0.0
    # Exact on the training range, first miss beyond it: that n.
    assert dm.extra_test_metrics(Counter(limit=top + 5)) == {
        "test_count_limit": float(top + 6), "test_train_range_exact": 1.0}


def test_validation_and_test_bands_are_shared_by_both_sizes_and_beyond_training():
    small, large = (AnbnDataModule(AnbnDataConfig(size=s, **CFG)) for s in ("small", "large"))
    bands = []
    for dm in (small, large):
        dm.setup()
        n_of = {k: set(((t.tensors[2] - 1) // 2).tolist()) for k, t in
                (("train", dm.train_set), ("val", dm.val_set), ("test", dm.test_set))}
        assert max(n_of["train"]) == dm.n_max
        assert min(n_of["val"]) > max(CFG["n_max_small"], CFG["n_max_large"])
        assert min(n_of["test"]) > max(n_of["val"])
        bands.append((n_of["val"], n_of["test"]))
    assert bands[0] == bands[1] == ({9, 10, 11}, {12, 13, 14, 15})


def test_splits_sizes_and_determinism():
    cfg = dict(n_min=2, n_max_small=5, n_max_large=9, repeats=3, val_span=2, test_span=4,
               count_max=50)
    small, large = AnbnDataModule(AnbnDataConfig(**cfg)), AnbnDataModule(
        AnbnDataConfig(size="large", **cfg))
    for dm in (small, large):
        dm.setup()
    # Training strings: every n in range, `repeats` times; test: test_span n above the band
    # of validation strings, which lies above the larger training range.
    assert len(small.train_set) == 4 * 3 and len(large.train_set) == 8 * 3
    train_n = sorted(set(((small.train_set.tensors[2] - 1) // 2).tolist()))
    test_n = ((small.test_set.tensors[2] - 1) // 2).tolist()
    assert train_n == [2, 3, 4, 5] and test_n == [12, 13, 14, 15]
    assert not set(train_n) & set(test_n)
    again = AnbnDataModule(AnbnDataConfig(**cfg))
    again.setup()
    for a, b in zip(small.train_set.tensors, again.train_set.tensors, strict=True):
        assert torch.equal(a, b)
    assert small.condition()["T"] == "11" and large.condition()["T"] == "19"
    assert np.all(small.train_set.tensors[0].sum(-1).sum(-1).numpy() ==
                  small.train_set.tensors[2].numpy())  # padding rows are all zero


@pytest.mark.parametrize(("kwargs", "key"), [
    (dict(n_max_small=0), "data.n_max_small"),
    (dict(count_max=100), "data.count_max"),
    (dict(count_max=170), "data.count_max"),  # 100 + val 20 + test 50 is the top band
    (dict(val_span=0), "data.val_span"),
    (dict(repeats=0), "data.repeats"),
])
def test_invalid_settings_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        AnbnDataConfig(**kwargs)
