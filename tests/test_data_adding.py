import numpy as np
import pytest
import torch

from rnnsweep.data.adding import AddingDataConfig, AddingDataModule, generate_adding
from rnnsweep.errors import ConfigError


def test_target_is_sum_of_marked_values_one_marker_per_half():
    x, y = generate_adding(200, 30, seed=7)
    assert x.shape == (200, 30, 2) and y.shape == (200,)
    values, markers = x[..., 0], x[..., 1]
    assert np.all(markers.sum(1) == 2)
    assert np.all(markers[:, :15].sum(1) == 1) and np.all(markers[:, 15:].sum(1) == 1)
    np.testing.assert_allclose(y, (values * markers).sum(1), rtol=1e-6)
    assert values.min() >= 0 and values.max() < 1


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = generate_adding(50, 20, 1), generate_adding(50, 20, 1), generate_adding(50, 20, 2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def _module(size: str) -> AddingDataModule:
    dm = AddingDataModule(AddingDataConfig(size=size, seq_len=20, n_train_small=30,
                                           n_train_large=300, n_val=40, n_test=50))
    dm.setup()
    return dm


def test_sizes_and_shared_validation_and_test_sets():
    small, large = _module("small"), _module("large")
    assert len(small.train_set) == 30 and len(large.train_set) == 300
    assert len(small.val_set) == 40 and len(small.test_set) == 50
    for a, b in ((small.val_set, large.val_set), (small.test_set, large.test_set)):
        for ta, tb in zip(a.tensors, b.tensors, strict=True):
            assert (ta == tb).all()
    # No training sequence of either size in the validation or test set: every row, and
    # the three splits of a module hold distinct rows.
    held = {name: {r.tobytes() for r in ds.tensors[0].numpy()}
            for name, ds in (("val", small.val_set), ("test", small.test_set))}
    assert len(held["val"]) == 40 and len(held["test"]) == 50
    assert not held["val"] & held["test"]
    for dm, n in ((small, 30), (large, 300)):
        train = {r.tobytes() for r in dm.train_set.tensors[0].numpy()}
        assert len(train) == n
        assert not train & held["val"] and not train & held["test"]


def test_neighbouring_data_seeds_share_no_values():
    a = AddingDataModule(AddingDataConfig(seed=1234, n_train_small=1000, n_val=1000))
    b = AddingDataModule(AddingDataConfig(seed=1235, n_train_small=1000, n_val=1000))
    a.setup()
    b.setup()
    rows = [{r.tobytes() for r in ds.tensors[0].numpy()}
            for ds in (a.train_set, a.val_set, a.test_set, b.train_set, b.val_set, b.test_set)]
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            assert not rows[i] & rows[j], (i, j)


def test_noise_sd_adds_target_noise_of_that_size_and_keeps_the_rule_noiseless_at_zero():
    x, y = generate_adding(20000, 10, seed=3, noise_sd=0.3)
    clean = (x[..., 0] * x[..., 1]).sum(1)
    assert abs(float(np.std(y - clean)) - 0.3) < 0.01
    with pytest.raises(ConfigError, match="data.noise_sd"):
        AddingDataConfig(noise_sd=-0.1)


def test_batches_are_tensor_slices_with_lengths():
    dm = _module("small")
    x, y, lengths = next(iter(dm.train_dataloader()))
    assert x.shape == (dm.batch_size if dm.batch_size < 30 else 30, 20, 2)
    assert y.shape[1] == 1 and (lengths == 20).all()


def test_invalid_sequence_length_is_rejected():
    with pytest.raises(ConfigError, match="data.seq_len"):
        AddingDataConfig(seq_len=1)


def test_the_eval_mode_training_subset_is_a_fixed_random_draw():
    """Not the split's first rows (anbn's shortest strings, a file's first class): a seeded
    draw over the whole training split, the same in every data module built alike."""
    from torch.utils.data import TensorDataset

    from rnnsweep.data.base import TensorDataModule
    from rnnsweep.data.spec import TaskSpec

    class Ordered(TensorDataModule):
        spec = TaskSpec(input_size=1, output_size=1, loss="mse")

        def condition(self) -> dict[str, str]:
            return {"task": "ordered"}

        def build(self):
            n = 200
            x = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1)
            ds = TensorDataset(x, x[:, 0], torch.ones(n, dtype=torch.long))
            val = TensorDataset(x[:50] + 1000, x[:50, 0], torch.ones(50, dtype=torch.long))
            test = TensorDataset(x[:50] + 2000, x[:50, 0], torch.ones(50, dtype=torch.long))
            return ds, val, test

    subsets = []
    for _ in range(2):
        dm = Ordered(batch_size=8)
        dm.setup()
        subsets.append(dm.train_eval_set().tensors[0].flatten())
    rows = subsets[0]
    assert len(rows) == 50 and torch.equal(rows, subsets[1])
    assert len(set(rows.tolist())) == 50
    assert rows.max() > 100  # drawn from the whole split, not its first 50 rows
