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


def test_counter_reference_is_exact_on_the_training_strings():
    cfg = AnbnDataConfig(n_max_small=6, n_max_large=8, count_max=20)
    dm = AnbnDataModule(cfg)
    dm.setup()
    x, y, lengths = dm.val_set.tensors
    out = Counter(limit=100)(x, lengths)
    real = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    assert (((out > 0).float() == y).all(-1) | ~real).all()
    assert dm.extra_test_metrics(Counter(limit=100)) == {"test_count_limit": 21.0}


def test_splits_sizes_and_determinism():
    cfg = dict(n_min=2, n_max_small=5, n_max_large=9, repeats=3, test_span=4, count_max=50)
    small, large = AnbnDataModule(AnbnDataConfig(**cfg)), AnbnDataModule(
        AnbnDataConfig(size="large", **cfg))
    for dm in (small, large):
        dm.setup()
    # Training strings: every n in range, `repeats` times; test: the next test_span n.
    assert len(small.train_set) == 4 * 3 and len(large.train_set) == 8 * 3
    train_n = sorted(set(((small.train_set.tensors[2] - 1) // 2).tolist()))
    test_n = ((small.test_set.tensors[2] - 1) // 2).tolist()
    assert train_n == [2, 3, 4, 5] and test_n == [6, 7, 8, 9]
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
    (dict(repeats=0), "data.repeats"),
])
def test_invalid_settings_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        AnbnDataConfig(**kwargs)
