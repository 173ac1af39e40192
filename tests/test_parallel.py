"""Two workers started at once on one study in the embedded SQLite stores."""

from __future__ import annotations

import fcntl
import os
import re
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from store_checks import check_no_loss, mlflow_url, optuna_url, start_train, trials_by_study

from rnnsweep.search.objective import SURPLUS_ATTR

N_TRIALS = 4


def waiting_on(lock: Path) -> int:
    """Processes blocked on an flock of this file (Linux /proc/locks: '-> FLOCK ...')."""
    inode = os.stat(lock).st_ino
    return sum(1 for line in Path("/proc/locks").read_text().splitlines()
               if "-> FLOCK" in line and line.split()[6].endswith(f":{inode}"))


@pytest.mark.slow
def test_two_local_workers_share_one_study_exactly(project, tmp_path):
    """Both workers are held at the study storage's lock until both wait there, so they
    start their trials together; then each must have run trials of its own."""
    args = ["cell=gru", "experiment=smoke", f"search.n_trials={N_TRIALS}",
            "search.reeval_seeds=0"]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    lock = project / "mlruns" / ".optuna.db.lock"  # rnnsweep.locks.store_lock's file
    lock.parent.mkdir(parents=True)
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        workers = [start_train(project, *args, log=log) for log in logs]
        deadline = time.monotonic() + 300
        while waiting_on(lock) < 2:
            assert all(w.poll() is None for w in workers), [p.read_text()[-2000:] for p in logs]
            assert time.monotonic() < deadline, "the workers never reached the storage lock"
            time.sleep(0.1)
        # Neither created its study nor its parent run while the lock was held.
        assert not (project / "mlruns" / "optuna.db").exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    codes = [w.wait(timeout=400) for w in workers]
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n".join(t[-2000:] for t in texts)
    assert not any("database is locked" in t for t in texts)
    check_no_loss(optuna_url(project), mlflow_url(project), N_TRIALS, n_studies=1)
    (trials,) = trials_by_study(optuna_url(project)).values()
    for t in trials:  # finished, or a surplus trial that never ran
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
            t.state == TrialState.FAIL and t.user_attrs.get(SURPLUS_ATTR)), (t.number, t.state)
    # One progress line per trial a worker ended: both worked, and together they ended all.
    ended = [len(re.findall(rf"^adding-\S+\s+\d+/{N_TRIALS} trials · ", t, re.M)) for t in texts]
    assert min(ended) >= 1 and sum(ended) == len(trials), (ended, len(trials))
