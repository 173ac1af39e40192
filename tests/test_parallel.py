"""Two workers started at once on one study in the embedded SQLite stores."""

from __future__ import annotations

import pytest
from store_checks import check_no_loss, mlflow_url, optuna_url, start_train

N_TRIALS = 4


@pytest.mark.slow
def test_two_local_workers_share_one_study_exactly(project, tmp_path):
    # Fresh stores: the workers also race on creating both databases' schemas.
    args = ["cell=gru", "experiment=smoke", f"search.n_trials={N_TRIALS}",
            "search.reeval_seeds=0"]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [start_train(project, *args, log=log) for log in logs]
    codes = [w.wait(timeout=400) for w in workers]
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n".join(t[-2000:] for t in texts)
    assert not any("database is locked" in t for t in texts)
    check_no_loss(optuna_url(project), mlflow_url(project), N_TRIALS, n_studies=1)
