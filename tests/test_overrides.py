"""rnnsweep.overrides.cross lists a sweep's jobs as Hydra's basic sweeper launches them (its
split_arguments, private to Hydra, is the oracle here and nowhere in the package)."""

from __future__ import annotations

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from rnnsweep.errors import ConfigError
from rnnsweep.overrides import cross


@pytest.mark.parametrize("overrides", [
    ["cell=lstm,gru", "data.size=small,large"],
    ["cell=lstm,gru,rnn", "seed=range(0,3)", "+trainer.foo=1", "model.dropout=0.1"],
    ["~search.space.dropout", "optim.lr=choice(0.001,0.01)", "data=adding"],
    ["search.repeat=0,1", "data.size=0.05,0.1,1"],
])
def test_the_jobs_are_the_basic_sweepers(overrides):
    parser = OverridesParser.create()
    ours = cross(parser.parse_overrides(overrides))
    hydra = BasicSweeper.split_arguments(parser.parse_overrides(overrides), None)[0]
    assert ours == hydra


def test_an_interval_sweep_is_refused_in_one_line():
    parsed = OverridesParser.create().parse_overrides(["optim.lr=interval(0.001,0.1)"])
    with pytest.raises(ConfigError, match="interval sweep needs a sampler"):
        cross(parsed)
