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
    accepts,
    encode,
    first_failure,
    make_batch,
)
from rnnsweep.errors import ConfigError
from rnnsweep.lit_module import RecurrentLitModule
from rnnsweep.losses import sequence_weights


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


CFG = dict(n_max_small=6, n_max_large=8, val_span=3, test_span=4, count_max=40, accept_n=30)


def test_counter_reference_is_exact_on_the_training_strings():
    dm = AnbnDataModule(AnbnDataConfig(**CFG))
    dm.setup()
    x, y, lengths = dm.train_set.tensors
    out = Counter(limit=100)(x, lengths)
    real = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    assert (((out > 0).float() == y).all(-1) | ~real).all()
    # No miss up to count_max = 40: both counts read 40 (exact through it); a^30 b^30 accepted.
    assert dm.extra_test_metrics(Counter(limit=100)) == {
        "test_count_strict": 40.0, "test_count_beyond": 40.0, "test_accepts_anbn": 1.0,
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
    metrics = dm.extra_test_metrics(Counter(limit=top + 5))
    assert (metrics["test_count_limit"], metrics["test_train_range_exact"]) == (top + 6, 1.0)


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


# -- the three count figures (no training: predictions are constructed) -----------------------

WEISS = dict(n_max_large=100, size="large", val_span=20, test_span=50, count_max=300)


def test_wrong_only_on_the_shortest_strings_reads_strict_0_and_beyond_110():
    """The reviewer's GRU: exact on n = 4..110, wrong on n = 1..3 (trained on 1..100)."""
    net = WrongAt({1, 2, 3})
    net.limit = 110
    dm = AnbnDataModule(AnbnDataConfig(accept_n=50, **WEISS))
    m = dm.extra_test_metrics(net)
    assert m["test_count_strict"] == 0.0  # n = 1 is already wrong
    assert m["test_count_beyond"] == 110.0  # 101..110 exact, 111 not
    assert m["test_count_limit"] == 0.0 and m["test_train_range_exact"] == 0.0
    assert m["test_accepts_anbn"] == 1.0  # a^50 b^50 is accepted
    assert AnbnDataModule(AnbnDataConfig(accept_n=111, **WEISS)).extra_test_metrics(net)[
        "test_accepts_anbn"] == 0.0  # no end predicted after the 111th b


def test_strict_and_beyond_agree_when_the_training_range_is_exact():
    dm = AnbnDataModule(AnbnDataConfig(**WEISS))
    m = dm.extra_test_metrics(Counter(limit=150))
    assert m["test_count_strict"] == m["test_count_beyond"] == 150.0
    # Wrong at the first string past training: beyond is the top training n itself.
    m = dm.extra_test_metrics(Counter(limit=100))
    assert (m["test_count_strict"], m["test_count_beyond"]) == (100.0, 100.0)
    # Wrong inside the training range only: strict stops there, beyond does not look.
    m = dm.extra_test_metrics(WrongAt({40}))
    assert (m["test_count_strict"], m["test_count_beyond"]) == (39.0, 300.0)


class EndEverywhere(Counter):
    """Predicts the end possible after every b: never misses a symbol that follows, but
    also allows one that does not (a^n b^k, k < n, would be accepted)."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = super().forward(x, lengths)
        out[..., OUT_END] = torch.where(x[..., 2] > 0, 1.0, out[..., OUT_END])
        return out


def test_acceptance_asks_only_for_the_symbols_that_follow():
    """Weiss et al.'s acceptance checks the symbols of the string itself; exactness also
    checks that nothing else is allowed, so this net accepts every a^n b^n and is exact on
    none past n = 1."""
    net = EndEverywhere(limit=10_000)
    assert accepts(net, 1000)
    assert first_failure(net, 1, 50, 25) == 2
    # The threshold is a probability: outputs of +-1 are p = 0.73 / 0.27.
    assert accepts(Counter(limit=10_000), 20, threshold=0.7)
    assert not accepts(Counter(limit=10_000), 20, threshold=0.75)


# -- fair to short strings: the loss weighting and short strings in validation -----------------

class Scaled(nn.Module):
    """A fixed 'network' for the loss: a WrongAt counter's outputs times 20 (confident)."""

    def __init__(self, net: nn.Module, spec) -> None:
        super().__init__()
        self.inner, self.spec = net, spec
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return 20.0 * self.inner(x, lengths)


@pytest.mark.parametrize("weighting", ["step", "string"])
def test_string_weighting_gives_every_string_the_same_weight(weighting):
    """n = 1..100 in one batch, only n = 1 wrong (its first step, all three outputs at logit
    -+20: BCE 60). By step, its 3 steps are 3 of 10,200 (n = 1..3: 0.15 %); by string, each
    string is 1 % of the loss."""
    ns = list(range(1, 101))
    dm = AnbnDataModule(AnbnDataConfig(loss_weighting=weighting, **WEISS))
    module = RecurrentLitModule(Scaled(WrongAt({1}), dm.spec), optimizer=torch.optim.Adam)
    with torch.no_grad():
        loss, hits, _, _ = module._loss_and_hits(make_batch(ns))
    steps = sum(2 * n + 1 for n in ns)
    assert steps == 10_200 and hits.numel() == steps
    per_string = [60.0 / 3] + [0.0] * 99  # mean step loss of each string
    expected = np.mean(per_string) if weighting == "string" else 60.0 / steps
    assert float(loss) == pytest.approx(expected, rel=1e-3)
    # The weights themselves: n = 1..3 hold 3 % of the loss by string, 0.15 % by step.
    _, _, lengths = make_batch(ns)
    w = sequence_weights(lengths, int(lengths.max()))
    assert float(w.sum()) == pytest.approx(1.0)
    assert torch.allclose(w.sum(1), torch.full((100,), 0.01))
    assert float(w[:3].sum()) == pytest.approx(0.03)
    assert 15 / steps == pytest.approx(0.00147, abs=1e-5)


def test_step_weighting_is_the_plain_mean_over_steps():
    dm = AnbnDataModule(AnbnDataConfig(**WEISS))
    assert not dm.spec.per_sequence_loss
    torch.manual_seed(0)
    x, y, lengths = make_batch([1, 5, 30])
    out = torch.randn(*y.shape)

    class Fixed(nn.Module):
        spec = dm.spec

        def __init__(self) -> None:
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, x, lengths):
            return out

    loss, _, _, _ = RecurrentLitModule(Fixed(), optimizer=torch.optim.Adam)._loss_and_hits(
        (x, y, lengths))
    real = torch.arange(y.shape[1])[None, :] < lengths[:, None]
    plain = torch.nn.functional.binary_cross_entropy_with_logits(
        out[real], y[real], reduction="none").sum(-1).mean()
    assert torch.allclose(loss, plain)


def test_short_strings_join_validation_and_the_test_band_stays_apart():
    dm = AnbnDataModule(AnbnDataConfig(val_short=3, **CFG))
    dm.setup()
    val_n = ((dm.val_set.tensors[2] - 1) // 2).tolist()
    assert val_n == [1, 2, 3, 9, 10, 11]
    test_n = set(((dm.test_set.tensors[2] - 1) // 2).tolist())
    assert not test_n & (set(val_n) | set(range(1, 9)))
    assert dm.condition()["val"] == "1-3+9-11"
    # Without short strings the study keeps its earlier name (no extra keys).
    plain = AnbnDataModule(AnbnDataConfig(**CFG)).condition()
    assert plain["val"] == "9-11" and "wt" not in plain
    assert AnbnDataModule(AnbnDataConfig(loss_weighting="string", **CFG)).condition()[
        "wt"] == "string"


def test_trivial_loss_is_weighted_as_the_cells_loss_is():
    step, string = (AnbnDataModule(AnbnDataConfig(loss_weighting=w, val_short=3, **CFG))
                    for w in ("step", "string"))
    a, b = step.baseline(), string.baseline()
    assert a["baseline_acc"] == b["baseline_acc"] and a["baseline_loss"] != b["baseline_loss"]


@pytest.mark.parametrize(("kwargs", "key"), [
    (dict(loss_weighting="sequence"), "data.loss_weighting"),
    (dict(val_short=-1), "data.val_short"),
    (dict(val_short=51), "data.val_short"),  # more than the small range n = 1..50 holds
    (dict(accept_threshold=1.0), "data.accept_threshold"),
    (dict(accept_n=0), "data.accept_n"),
])
def test_invalid_fairness_settings_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        AnbnDataConfig(**kwargs)
