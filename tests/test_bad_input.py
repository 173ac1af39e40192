"""Bad input: a one-line error naming the key, exit 2, and nothing created."""

from __future__ import annotations

import pytest
from conftest import run_train

CASES = [
    (["cell=transformer"], "cell=transformer"),
    (["model.dropout=1.5"], "model.dropout"),
    (["model.hidden_size=0"], "model.hidden_size"),
    (["search.n_trials=-1"], "search.n_trials"),
    (["search.space.lr.low=0.1", "search.space.lr.high=0.01"], "search.space.lr.low"),
    (["model.hiden_size=8"], "hiden_size"),
    (["trainer.max_epochs=many"], "trainer.max_epochs"),
]


@pytest.mark.parametrize(("args", "key"), CASES, ids=[c[1] for c in CASES])
def test_bad_value_fails_before_anything_is_created(project, args, key):
    proc = run_train(project, *args, "experiment=smoke")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], proc.stderr
    assert not (project / "mlruns").exists() or not any((project / "mlruns").iterdir())


def test_bad_value_in_a_later_sweep_job_stops_the_whole_sweep_first(project):
    proc = run_train(project, "-m", "cell=lstm,transformer", "experiment=smoke")
    assert proc.returncode == 2
    assert "cell=transformer" in proc.stderr and "allowed: gru, lstm, rnn" in proc.stderr
    assert not (project / "mlruns").exists()
