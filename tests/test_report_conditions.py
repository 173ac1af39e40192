"""Conditions the report prints beside its verdicts, read from the runs (in-process)."""

from __future__ import annotations


def test_every_verdict_names_each_cells_initialisation():
    """The keep-the-state gate's start is a condition of every verdict: the report prints
    each cell's recorded `init` beside the bottom line and the claims."""
    import pandas as pd

    from rnnsweep.report.build import init_text
    from rnnsweep.report.collect import Sweep

    trials = pd.DataFrame({"tags.cell": ["lstm", "gru", "gru"],
                           "params.init": ["pytorch-default; forget_bias=1",
                                           "pytorch-default; update_bias=1",
                                           "pytorch-default; update_bias=1"]})
    sweep = Sweep("e", "s", "val_loss", "minimize", {}, pd.DataFrame(), trials, pd.DataFrame())
    text = init_text(sweep)
    assert "gru: pytorch-default; update_bias=1" in text
    assert "lstm: pytorch-default; forget_bias=1" in text
    assert "not recorded" in init_text(Sweep("e", "s", "val_loss", "minimize", {},
                                             pd.DataFrame(), pd.DataFrame(), pd.DataFrame()))
