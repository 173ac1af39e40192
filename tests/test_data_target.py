"""`data._target_` names the task's data module, as cells and optimisers name theirs: a task
of one's own is its class and one YAML; a config stored before the key (task only) still
builds; a bad class is one line naming data._target_."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from omegaconf import OmegaConf

from rnnsweep.data.adding import AddingDataConfig, AddingDataModule
from rnnsweep.data.registry import build_datamodule
from rnnsweep.errors import ConfigError

SMALL = {"size": "small", "n_train_small": 16, "n_train_large": 32, "n_val": 8, "n_test": 8,
         "seq_len": 6, "batch_size": 4}


@dataclass
class ReversedAddingConfig(AddingDataConfig):
    _target_: str = "test_data_target.ReversedAdding"
    task: str = "reversed_adding"


class ReversedAdding(AddingDataModule):
    """A task of one's own: the adding problem read backwards."""

    config = ReversedAddingConfig

    def build(self):  # noqa: ANN201 (the base's signature)
        splits = super().build()
        return tuple(self._reverse(ds) for ds in splits)

    @staticmethod
    def _reverse(ds):  # noqa: ANN001, ANN205
        from torch.utils.data import TensorDataset

        x, y, lengths = ds.tensors
        return TensorDataset(x.flip(1), y, lengths)


def test_a_task_of_ones_own_is_built_from_its_target():
    cfg = OmegaConf.create({"_target_": "test_data_target.ReversedAdding",
                            "task": "reversed_adding", **SMALL})
    dm = build_datamodule(cfg)
    assert type(dm) is ReversedAdding and dm.cfg.task == "reversed_adding"
    plain = build_datamodule(OmegaConf.create(
        {"_target_": "rnnsweep.data.adding.AddingDataModule", "task": "adding", **SMALL}))
    dm.setup()
    plain.setup()
    assert (dm.train_set.tensors[0] == plain.train_set.tensors[0].flip(1)).all()


def test_a_config_stored_before_the_key_builds_by_its_task():
    dm = build_datamodule(OmegaConf.create({"task": "adding", **SMALL}))
    assert type(dm) is AddingDataModule


@pytest.mark.parametrize(("target", "message"), [
    ("os.path.join", "data._target_='os.path.join' is invalid: not an importable class"),
    ("collections.OrderedDict", "must be a subclass of rnnsweep.data.base.TensorDataModule"),
    ("nowhere.Module", "data._target_='nowhere.Module' is invalid: not an importable class"),
])
def test_a_bad_target_is_one_line_naming_the_key(target, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build_datamodule(OmegaConf.create({"_target_": target, "task": "adding", **SMALL}))
    with pytest.raises(ConfigError, match="data.task='mine' has no data._target_"):
        build_datamodule(OmegaConf.create({"task": "mine", **SMALL}))
