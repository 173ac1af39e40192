"""`make sweep` runs one worker per core (Hydra's joblib launcher): the studies run side by
side and keep their exact trial counts, leave nothing RUNNING, and the summary is complete."""

from __future__ import annotations

import re

from conftest import ROOT, run_train
from store_checks import all_runs, check_no_loss, mlflow_url, optuna_url, trials_by_study


def test_make_sweep_uses_one_worker_per_core():
    import subprocess

    dry = subprocess.run(["make", "-n", "sweep", "WORKERS=3"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "train.py -m cell=lstm,gru hydra.launcher.n_jobs=3" in dry
    one = subprocess.run(["make", "-n", "sweep", "WORKERS=1"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "train.py -m cell=lstm,gru hydra/launcher=basic" in one


def test_the_literal_sweep_command_uses_every_core():
    """`python train.py -m cell=lstm,gru`, as typed, launches its jobs through joblib with one
    worker per core (n_jobs -1), and the thread policy gives each worker its share."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["cell=lstm"], return_hydra_config=True)
    assert "JoblibLauncher" in cfg.hydra.launcher._target_
    assert cfg.hydra.launcher.n_jobs == -1
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        basic = compose("config", overrides=["hydra/launcher=basic"], return_hydra_config=True)
    assert "BasicLauncher" in basic.hydra.launcher._target_


def test_parallel_smoke_sweep_keeps_exact_counts_and_a_complete_summary(project):
    proc = run_train(project, "-m", "cell=lstm,gru", "experiment=smoke", "data.size=small",
                     "hydra.launcher.n_jobs=2", "search.reeval_seeds=0",
                     "search.reeval_max_seeds=0", timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    studies = trials_by_study(optuna_url(project))
    assert len(studies) == 2
    check_no_loss(optuna_url(project), mlflow_url(project), n_trials=3, n_studies=2)
    runs = all_runs(mlflow_url(project))
    # Both workers trained: one torch thread each (the cores shared by the policy).
    threads = {r.data.params.get("num_threads") for r in runs if r.data.tags.get("role") == "trial"}
    assert threads == {"1"}
    summary = proc.stdout[proc.stdout.index("Sweep summary"):]
    rows = [ln for ln in summary.splitlines() if re.match(r"\s+adding\s+(small|large)\s", ln)]
    assert sorted(tuple(r.split()[1:3]) for r in rows) == [("small", "gru"), ("small", "lstm")]
