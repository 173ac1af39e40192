"""Same command, fresh stores, CPU: the same trials with the same values."""

from __future__ import annotations

import pytest
from conftest import run_train
from store_checks import optuna_url, trials_by_study


def trial_record(storage: str, study: str) -> list[tuple]:
    return [(t.number, t.state.name, t.params, t.value)
            for t in trials_by_study(storage)[study]]


@pytest.mark.slow
def test_rerun_in_fresh_stores_gives_identical_trials(smoke_sweep, project):
    # One job of the session's smoke sweep, run again on its own in a fresh project.
    proc = run_train(project, "cell=lstm", "data.size=small", "experiment=smoke",
                     "search.reeval_seeds=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (study,) = trials_by_study(optuna_url(project))
    first = trial_record(optuna_url(smoke_sweep), study)
    again = trial_record(optuna_url(project), study)
    assert len(again) == 3 and all(value is not None or state == "PRUNED"
                                   for _, state, _, value in again)
    assert again == first
