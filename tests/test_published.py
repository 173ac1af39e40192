"""Published vs measured: the data file, the paper profiles and the report section.

One end-to-end run (the cheapest profile, weiss2018_smoke: train.py -m, then the report);
the other profiles are composed and validated in-process, and the verdict rules are checked
on hand-made sweeps.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, make_project_copy, run_python, run_train
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from benchmarks.papers import command_args
from rnnsweep.report import published, published_checks
from rnnsweep.report.collect import Sweep

PROFILES = ("weiss2018", "chung2014", "hochreiter1997", "greff2017")
TASKS = {"weiss2018": "anbn", "chung2014": "chorales", "hochreiter1997": "adding",
         "greff2017": "chorales"}


def test_data_file_has_the_columns_and_the_issue_figures():
    df = published.load_published()
    assert list(df.columns) == list(published.COLUMNS)
    assert df["id"].is_unique and df["value"].notna().all()
    by_id = df.set_index("id")["value"]
    assert (by_id["chung2014_rnn"], by_id["chung2014_gru"], by_id["chung2014_lstm"]) == \
        (9.19, 8.54, 8.67)
    assert by_id["hochreiter1997_t100"] == 74000
    assert (by_id["weiss2018_lstm"], by_id["weiss2018_gru"]) == (1, 0)  # a^1000 b^1000
    assert by_id["greff2017_lr"] == 1
    assert by_id["greff2017_hidden"] == 2
    assert set(df["profile"]) == set(PROFILES)
    for expect in df["expect"]:
        kind = expect.partition(":")[0]
        assert kind in ("above", "below", "solves", "rank"), expect
    diffs = published.load_differences()
    assert set(diffs) == set(PROFILES) and all(diffs.values())


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("smoke", [False, True])
def test_profile_composes_and_validates(profile, smoke, tmp_path, monkeypatch):
    from rnnsweep.job import typed_config

    monkeypatch.setenv("RNNSWEEP_ROOT", str(tmp_path))
    name = f"{profile}_smoke" if smoke else profile
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    sweep_params = dict(cfg.hydra.sweeper.params)
    assert choices["data_profile"] == f"{TASKS[profile]}_{name}"
    assert sweep_params["data.size"] == "large" and "lstm" in sweep_params["cell"]
    typed = typed_config(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    assert typed.profile == name and typed.data.task == TASKS[profile]
    assert published.base_profile(typed.profile, set(PROFILES)) == profile
    if profile in ("weiss2018", "hochreiter1997"):
        assert published.fixed_space(OmegaConf.to_container(typed.search.space))
        assert typed.search.pruner._target_.endswith("NopPruner")
    if profile == "weiss2018":
        assert typed.model.hidden_size == 10 and typed.optim.lr == 1e-2
        assert typed.scheduler._target_.endswith("CosineAnnealingLR")
        if not smoke:  # full batch: one copy of n = 1..100 per step, 4,000 steps
            assert typed.data.batch_size == 100 and typed.data.repeats == 1
            assert typed.data.n_max_large == 100 and typed.trainer.max_steps == 4000
        # Fair to short strings: each string weighs the same; short strings in validation.
        assert typed.data.loss_weighting == "string"
        assert typed.data.val_short == (2 if smoke else 10)
        assert typed.data.accept_n == 1000  # the paper's a^1000 b^1000
    if profile == "chung2014":
        assert typed.search.match_params and typed.search.budget.low == 20000
    if profile == "greff2017":
        assert typed.search.sampler._target_.endswith("RandomSampler")
        assert typed.search.pruner._target_.endswith("NopPruner")
        # The paper's optimiser: Nesterov SGD, the step rescaled by 1 - momentum, an update's
        # loss its sequences' summed NLL.
        assert typed.optim._target_ == "rnnsweep.optimizers.RescaledMomentumSGD"
        assert typed.model.train_objective == "sequence_sum"
    if profile == "hochreiter1997" and not smoke:
        # The published lengths that fit: T=100 and T=500 (T=1,000 does not).
        assert sweep_params["data.seq_len"] == "100,500"
        assert typed.trainer.max_steps * typed.data.batch_size > 209_000
        # Stopped once solved (validation MSE 1e-4: RMS error 0.01); one worker per job.
        assert typed.trainer.stop_at == 1e-4
        assert (f"hydra.launcher.n_jobs={len(sweep_params['cell'].split(',')) * 2}"
                in command_args(name))


def test_hochreiter1997_gpu_has_every_published_length_and_is_refused_without_a_gpu(
        tmp_path, monkeypatch):
    import torch

    from rnnsweep.errors import ConfigError
    from rnnsweep.preflight import preflight

    monkeypatch.setenv("RNNSWEEP_ROOT", str(tmp_path))
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=hochreiter1997_gpu"],
                      return_hydra_config=True)
    assert cfg.hydra.sweeper.params["data.seq_len"] == "100,500,1000"
    assert cfg.hydra.runtime.choices["data_profile"] == "adding_hochreiter1997_gpu"
    assert cfg.data.n_train_large == 20000 and cfg.trainer.accelerator == "gpu"
    assert cfg.trainer.max_steps * cfg.data.batch_size > 853_000  # the paper's T=1,000
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="trainer.accelerator='gpu' is invalid"):
            preflight(ROOT / "conf", ["-m", "experiment=hochreiter1997_gpu"])
        assert not (tmp_path / "mlruns").exists()


def _sweep(runs: list[dict], space: dict | None = None,
           parents: list[dict] | None = None) -> Sweep:
    reevals = pd.DataFrame([{"status": "FINISHED", "run_id": f"r{i}", **r}
                            for i, r in enumerate(runs)])
    parents = pd.DataFrame(parents) if parents else pd.DataFrame(
        {"condition": sorted(set(reevals["condition"])), "tags.profile": "x", "run_id": "p"})
    return Sweep(experiment="e", sweep_id="s", metric="val_loss", direction="minimize",
                 space=space or {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
                 parents=parents, trials=pd.DataFrame(), reevals=reevals)


def _rows(profile: str, metric: str | None = None) -> pd.DataFrame:
    """A profile's published rows; `metric` swaps the measured metric (a count instead of
    weiss2018's 0/1 acceptance) to exercise the tests on spread-out values."""
    df = published.load_published()
    rows = df[df["profile"] == profile]
    return rows.assign(metric=metric) if metric else rows


def _weiss_runs(lstm: list[float], gru: list[float],
                metric: str = "test_count_beyond") -> list[dict]:
    return [{"tags.cell": c, "condition": "large", f"metrics.{metric}": v}
            for c, vs in (("lstm", lstm), ("gru", gru)) for v in vs]


def test_direction_verdicts_follow_the_means():
    lstm = [171, 345, 285]
    gru = [113, 130, 105]
    rows = _rows("weiss2018", "test_count_beyond")
    out = published.compare_rows(_sweep(_weiss_runs(lstm, gru)), rows, pd.DataFrame())
    # One-sided Welch p = 0.047; both rows state the same comparison, so Holm has 1 test.
    assert list(out["verdict"]) == [published.REPRODUCED] * 2
    assert "9 of 9 seed pairs agree" in out["evidence"].iloc[0]
    assert "p=0.047, Holm level 0.05 of 1 comparison" in out["evidence"].iloc[0]
    assert out["ours"].iloc[0].startswith(f"{np.mean(lstm):.4g} ± ")
    # Reversed: neither row reproduces; a missing cell is "not measured".
    out = published.compare_rows(_sweep(_weiss_runs(gru, lstm)), rows, pd.DataFrame())
    assert list(out["verdict"]) == [published.NOT_REPRODUCED] * 2
    only_lstm = _weiss_runs(lstm, [])
    out = published.compare_rows(_sweep(only_lstm), rows, pd.DataFrame())
    assert list(out["verdict"]) == [published.NOT_MEASURED] * 2


def test_weiss_rows_read_acceptance_and_show_both_counts():
    """The published figure is the 0/1 acceptance of a^1000 b^1000; the strict count and the
    count past training stand beside it in the evidence, for every cell."""
    runs = (_weiss_runs([1, 1, 1], [0, 0, 0], "test_accepts_anbn")
            + _weiss_runs([300, 280, 0], [0, 0, 0], "test_count_strict")
            + _weiss_runs([300, 280, 250], [110, 111, 108], "test_count_beyond"))
    out = published.compare_rows(_sweep(runs), _rows("weiss2018"), pd.DataFrame())
    assert list(out["result"]) == ["lstm: accepts a^1000 b^1000", "gru: accepts a^1000 b^1000"]
    assert list(out["published"]) == ["1 (1 = accepted)", "0 (1 = accepted)"]
    assert list(out["verdict"]) == [published.REPRODUCED] * 2  # no spread, 9 of 9 pairs
    evidence = out["evidence"].iloc[1]
    assert "no spread in either cell" in evidence
    assert out["evidence"].iloc[0].endswith("3 of 3 seeds = 1 as published")
    assert evidence.endswith("3 of 3 seeds = 0 as published")
    assert "test_count_strict: gru 0 ± 0, lstm 193.3 ± 168" in evidence
    assert "test_count_beyond: gru 109.7 ± 1.53, lstm 276.7 ± 25.2" in evidence


def test_a_direction_the_seeds_cannot_tell_from_chance_is_not_called_reproduced():
    """LSTM 0, 942, 283 against GRU 0, 0, 0: the means point the published way, but the
    one-sided Welch p is 0.14; with no spread at all, every seed pair must agree."""
    rows = _rows("weiss2018", "test_count_beyond")
    out = published.compare_rows(_sweep(_weiss_runs([0, 942, 283], [0, 0, 0])), rows,
                                 pd.DataFrame())
    assert list(out["verdict"]) == [published.NOT_SIGNIFICANT] * 2
    assert "p=0.14" in out["evidence"].iloc[0]
    out = published.compare_rows(_sweep(_weiss_runs([500, 500], [0, 0])), rows, pd.DataFrame())
    assert list(out["verdict"]) == [published.REPRODUCED] * 2
    out = published.compare_rows(_sweep(_weiss_runs([500], [0])), rows, pd.DataFrame())
    assert list(out["verdict"]) == [published.NOT_SIGNIFICANT] * 2  # one seed decides nothing
    assert "one seed: no test" in out["evidence"].iloc[0]


def test_holm_turns_a_lone_significant_comparison_into_chance_among_many():
    """Constructed p-values: 0.03 rejects alone (level 0.05) but not as the smallest of ten
    (level 0.005); a comparison with no spread and every pair agreeing (p = 0) still does."""
    def comparison(i: int, p: float) -> published_checks.Comparison:
        c = published_checks.Comparison((f"a{i}", f"b{i}", "large", "m"),
                                        np.array([2.0, 3.0]), np.array([1.0, 1.5]))
        c.p = p
        return c

    alone = [comparison(0, 0.03)]
    levels = published_checks.holm(alone)
    assert levels[alone[0].key] == 0.05
    assert published_checks.direction_verdict(alone[0], levels) == published.REPRODUCED
    many = alone + [comparison(i, 0.5) for i in range(1, 10)]
    levels = published_checks.holm(many)
    assert levels[many[0].key] == pytest.approx(0.005)
    assert published_checks.direction_verdict(many[0], levels) == published.NOT_SIGNIFICANT
    sure = [comparison(0, 0.0)] + many[1:]
    assert published_checks.direction_verdict(sure[0], published_checks.holm(sure)) == \
        published.REPRODUCED
    # A comparison stated twice (two rows) is one hypothesis: one Holm level, m = 1.
    twice = [comparison(0, 0.03), comparison(0, 0.03)]
    assert len(published_checks.holm(twice)) == 1


def test_holm_runs_across_the_rows_of_one_paper():
    """The same seeds (one-sided Welch p = 0.016) reproduce a row of a one-row paper and do
    not among ten rows whose other comparisons are chance."""
    def row(i: int) -> dict:
        return {"id": f"r{i}", "paper": "P", "profile": "p", "table": "t", "setting": "s",
                "cell": f"a{i}", "quantity": "q", "metric": "m", "value": 1.0,
                "relation": "=", "expect": f"above:b{i}", "unit": "u", "also": "",
                "citation": "c"}
    runs = [{"tags.cell": c, "condition": "large", "metrics.m": v}
            for c, vs in (("a0", [1.3, 1.5, 1.7]), ("b0", [0.9, 1.0, 1.1])) for v in vs]
    for i in range(1, 10):  # chance: the same spread, equal means
        runs += [{"tags.cell": c, "condition": "large", "metrics.m": v}
                 for c, vs in ((f"a{i}", [1.0, 1.1, 0.9]), (f"b{i}", [1.0, 0.95, 1.05]))
                 for v in vs]
    one = published.compare_rows(_sweep(runs), pd.DataFrame([row(0)]), pd.DataFrame())
    assert one["verdict"].iloc[0] == published.REPRODUCED
    assert "p=0.016, Holm level 0.05 of 1 comparison" in one["evidence"].iloc[0]
    ten = published.compare_rows(_sweep(runs), pd.DataFrame([row(i) for i in range(10)]),
                                 pd.DataFrame())
    assert ten["verdict"].iloc[0] == published.NOT_SIGNIFICANT
    assert "p=0.016, Holm level 0.005 of 10 comparisons" in ten["evidence"].iloc[0]


def test_chung_rows_need_both_gated_cells_below_tanh():
    runs = [{"tags.cell": c, "condition": "large", "metrics.test_loss": v}
            for c, vs in {"rnn": [9.0, 9.1], "gru": [8.5, 8.6], "lstm": [9.3, 9.2]}.items()
            for v in vs]
    out = published.compare_rows(_sweep(runs), _rows("chung2014"), pd.DataFrame())
    verdicts = dict(zip(out["result"].str.split(":").str[0], out["verdict"], strict=True))
    assert verdicts == {"rnn": published.NOT_REPRODUCED, "gru": published.REPRODUCED,
                        "lstm": published.NOT_REPRODUCED}


def test_solves_and_rank_rows(monkeypatch):
    # No MLflow store here: the batch size (and so the sequences-to-solve column) is unknown.
    monkeypatch.setattr(published, "batch_size", lambda sweep: None)
    runs = [{"tags.cell": c, "condition": f"large T={t}", "metrics.test_acc": acc}
            for c, t, acc in [("lstm", 100, 0.99), ("lstm", 100, 0.97), ("rnn", 100, 0.2),
                              ("lstm", 50, 0.99)]]
    out = published.compare_rows(_sweep(runs), _rows("hochreiter1997"), pd.DataFrame())
    got = dict(zip(out["condition"], out["verdict"], strict=True))
    assert got == {"large T=100": published.REPRODUCED, "T=500": published.NOT_MEASURED,
                   "T=1000": published.NOT_MEASURED}
    assert "rnn test acc 0.2" in out.set_index("condition").loc["large T=100", "evidence"]
    imp = _importances("s")
    trained = [_study("s", best=5.0, trivial=11.1)]
    out = published.compare_rows(_sweep(runs, parents=trained), _rows("greff2017"), imp)
    assert list(out["ours"]) == ["rank 1", "rank 3"]
    assert list(out["verdict"]) == [published.REPRODUCED, published.NOT_REPRODUCED]
    assert "trained: best 5 vs trivial 11.1" in out["evidence"].iloc[0]
    out = published.compare_rows(_sweep(runs, parents=trained), _rows("greff2017"),
                                 imp.iloc[:0])
    assert list(out["verdict"]) == [published.NOT_MEASURED] * 2


def test_a_rank_row_says_when_its_study_had_not_converged(monkeypatch):
    """greff2017 at 800 steps: the LSTM's best trial still improving at its last step; the
    ranks stand, labelled as the importances of that budget."""
    runs = [{"tags.cell": "lstm", "condition": "large", "metrics.test_loss": 6.0}]
    sweep = _sweep(runs, parents=[_study("s", best=6.2, trivial=11.1)])
    monkeypatch.setattr(published, "unconverged", lambda sweep: {("lstm", "large")})
    out = published.compare_rows(sweep, _rows("greff2017"), _importances("s"))
    assert list(out["ours"]) == ["rank 1", "rank 3"]
    assert all("not converged: the best trial was still improving" in e
               for e in out["evidence"])
    monkeypatch.setattr(published, "unconverged", lambda sweep: set())
    out = published.compare_rows(sweep, _rows("greff2017"), _importances("s"))
    assert not any("not converged" in e for e in out["evidence"])


def _importances(study: str, cell: str = "lstm") -> pd.DataFrame:
    return pd.DataFrame({"study": study, "cell": cell, "condition": "large",
                         "parameter": ["lr", "momentum", "hidden_size", "dropout"],
                         "importance": [0.6, 0.25, 0.1, 0.05], "n_trials": 30,
                         "few_trials": False})


def _study(name: str, best: float | None, trivial: float | None) -> dict:
    return {"condition": "large", "tags.profile": "greff2017", "run_id": f"p-{name}",
            "tags.study_name": name, "tags.cell": "lstm", "metrics.best_val_loss": best,
            "metrics.baseline_loss": trivial}


def test_importances_are_read_only_from_studies_whose_runs_trained():
    """greff2017's finding: best runs at 10.9-11.1 nats against a trivial 11.1. A study
    counts when its best is at most 90 % of the trivial loss (10 % of the way to 0)."""
    runs = [{"tags.cell": "lstm", "condition": "large", "metrics.test_loss": 9.0}]
    imp = pd.concat([_importances("flat"), _importances("ok")])
    sweep = _sweep(runs, parents=[_study("flat", 10.95, 11.1), _study("ok", 9.0, 10.0)])
    out = published.compare_rows(sweep, _rows("greff2017"), imp)
    by_study = {(r["result"], r["evidence"].split(":")[0]): r for _, r in out.iterrows()}
    flat = by_study[("lstm: importance rank of the learning rate", "flat")]
    assert flat["verdict"] == published.NOT_MEASURED and flat["ours"] == "n/a"
    assert "not measured: runs did not train (best 10.95 vs trivial 11.1" in flat["evidence"]
    assert "at least 10% of the gap" in flat["evidence"]
    ok = by_study[("lstm: importance rank of the learning rate", "ok")]
    assert ok["verdict"] == published.REPRODUCED  # 9.0 is exactly 90 % of 10.0: trained
    just_short = _sweep(runs, parents=[_study("ok", 9.01, 10.0)])
    out = published.compare_rows(just_short, _rows("greff2017"), _importances("ok"))
    assert set(out["verdict"]) == {published.NOT_MEASURED}
    # No trivial loss on the parent: the check cannot be made, so no rank is read.
    unknown = _sweep(runs, parents=[_study("ok", 5.0, None)])
    out = published.compare_rows(unknown, _rows("greff2017"), _importances("ok"))
    assert set(out["verdict"]) == {published.NOT_MEASURED}
    assert "training not checked" in out["evidence"].iloc[0]


def test_fixed_space_counts_trials_as_seeds():
    space = {"lr": {"type": "float", "low": 1e-2, "high": 1e-2},
             "hidden_size": {"type": "int", "low": 10, "high": 10}}
    sweep = _sweep([{"tags.cell": "lstm", "condition": "large", "metrics.test_loss": 1.0}],
                   space)
    sweep.trials = pd.DataFrame([{"status": "FINISHED", "tags.state": "COMPLETE",
                                  "tags.cell": "lstm", "condition": "large",
                                  "metrics.test_loss": 2.0, "run_id": "t0"}])
    assert len(published.seed_runs(sweep)) == 2
    sweep.space = {**space, "lr": {"type": "float", "low": 1e-3, "high": 1e-2}}
    assert len(published.seed_runs(sweep)) == 1


@pytest.mark.slow  # trains or runs a study in-process for seconds
def test_hochreiter1997_smoke_in_process_reads_sequences_to_solve(tmp_path, monkeypatch):
    """One adding study (lstm, T=20) of the smoke profile through pipeline.run and the real
    report: the T=100 row is "not measured" (only T=20 ran), the sequences column comes
    from the runs' val_acc histories and the logged batch size."""
    from rnnsweep.pipeline import run
    from rnnsweep.report.__main__ import main as report_main

    project = make_project_copy(tmp_path / "project")
    for key in ("MLFLOW_TRACKING_URI", "RNNSWEEP_SWEEP_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RNNSWEEP_ROOT", str(project))
    job = ["experiment=hochreiter1997_smoke", "cell=lstm", "data.seq_len=20",
           "search.reeval_seeds=1", "search.reeval_max_seeds=1"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(project / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=job)
    run(cfg, job_overrides=job)
    GlobalHydra.instance().clear()
    monkeypatch.chdir(project)
    assert report_main(["data=adding", "report.cost_probe.enabled=false",
                        "report.attach=false"]) == 0
    GlobalHydra.instance().clear()
    table = pd.read_csv(project / "reports" / "adding" / "tables" / "published.csv")
    assert list(table["verdict"]) == [published.NOT_MEASURED] * 3
    assert "the sweep has no T=100 (lengths: 20)" in table["evidence"].iloc[0]
    # Only T=20 ran: a row asking for T=20 would be measured, with 2 seeds.
    rows = _rows("hochreiter1997").iloc[:1].assign(expect="solves:T=20")
    from rnnsweep.report.collect import load_sweep
    sweep = load_sweep(f"sqlite:///{project}/mlruns/mlflow.db", "adding")
    out = published.compare_rows(sweep, rows, pd.DataFrame())
    assert out["verdict"].iloc[0] in (published.REPRODUCED, published.NOT_REPRODUCED)
    assert "of 2 seeds never reached val acc" in out["ours"].iloc[0] \
        or "sequences to solve: " in out["ours"].iloc[0]
    assert "test acc " in out["ours"].iloc[0] and "(n=2: " in out["ours"].iloc[0]


@pytest.mark.slow  # about a minute on a busy 2-core machine
def test_weiss2018_smoke_end_to_end(tmp_path: Path):
    """The cheapest paper profile: its sweep (3 cells x 3 seeds), then the report's section."""
    project = make_project_copy(tmp_path / "project")
    proc = run_train(project, "-m", "experiment=weiss2018_smoke", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = run_python(project, "-m", "rnnsweep.report", "data=anbn",
                        "report.cost_probe.enabled=false", "report.attach=false",
                        timeout=600, RNNSWEEP_ROOT=str(project))
    assert report.returncode == 0, report.stderr[-3000:]
    md = (project / "reports" / "anbn" / "report.md").read_text()
    assert published.HEADING in md and "Protocol differences from the paper" in md
    assert "smoke-sized variant of weiss2018" in md
    table = pd.read_csv(project / "reports" / "anbn" / "tables" / "published.csv")
    assert list(table["result"]) == ["lstm: accepts a^1000 b^1000",
                                     "gru: accepts a^1000 b^1000"]
    assert set(table["verdict"]) <= {published.REPRODUCED, published.NOT_SIGNIFICANT,
                                     published.NOT_REPRODUCED}
    # Three seeds per cell: trial 0 (the space is fixed) and two re-evaluation seeds.
    assert table["ours"].str.contains(r"\(n=3: ").all()
    assert table["evidence"].str.contains("test_count_strict: ").all()
    assert table["evidence"].str.contains("test_count_beyond: ").all()
    assert "Holm's correction" in md


def test_solves_row_gives_every_cells_sequences_to_solve(monkeypatch):
    """Beside the LSTM's sequences (the paper's number) each other cell's: how many seeds
    solved it and after how many sequences on average, or that none did."""
    monkeypatch.setattr(published, "batch_size", lambda sweep: 64)
    steps = {"lstm": [100.0, math.nan], "gru": [50.0, 150.0], "rnn": [math.nan, math.nan]}
    monkeypatch.setattr(published, "sequences_to_solve", lambda runs, batch: np.array(
        [s * batch for s in steps[runs["tags.cell"].iloc[0]]]))
    runs = [{"tags.cell": c, "condition": "large T=100", "metrics.test_acc": acc}
            for c, acc in [("lstm", 0.97), ("lstm", 0.96), ("gru", 0.99), ("gru", 0.99),
                           ("rnn", 0.1), ("rnn", 0.1)]]
    out = published.compare_rows(_sweep(runs), _rows("hochreiter1997").iloc[:1],
                                 pd.DataFrame())
    assert "1 of 2 seeds never reached" in out["ours"].iloc[0]
    evidence = out["evidence"].iloc[0]
    assert "gru test acc 0.99, solved after 6.4e+03 sequences in 2 of 2 seeds" in evidence
    assert "rnn test acc 0.1, never solved in 2 seeds" in evidence


def test_a_comparison_names_the_cells_whose_budget_may_have_decided_it():
    """The GRU's best trial peaked at step 1,950 of 2,000 (last 10 %), the LSTM's at 1,000:
    the row says the GRU was not converged; a converged pair says nothing."""
    runs = _weiss_runs([300, 320], [100, 110])
    sweep = _sweep(runs)

    def with_best_steps(gru_step: float) -> Sweep:
        sweep.parents = pd.DataFrame([
            {"condition": "large", "tags.profile": "x", "tags.cell": c, "run_id": f"p-{c}",
             "tags.best_trial_run_id": f"t-{c}"} for c in ("lstm", "gru")])
        sweep.trials = pd.DataFrame([
            {"run_id": f"t-{c}", "tags.mlflow.parentRunId": f"p-{c}", "metrics.best_step": s,
             "params.budget_steps": "2000"} for c, s in (("lstm", 1000.0), ("gru", gru_step))])
        return sweep
    assert published.unconverged(with_best_steps(1950.0)) == {("gru", "large")}
    out = published.compare_rows(sweep, _rows("weiss2018", "test_count_beyond"), pd.DataFrame())
    assert all("not converged: gru (still improving in the last 10 %" in e
               for e in out["evidence"])
    out = published.compare_rows(with_best_steps(1200.0), _rows("weiss2018", "test_count_beyond"),
                                 pd.DataFrame())
    assert not any("not converged" in e for e in out["evidence"])


def test_a_solves_row_names_the_cells_still_improving_at_the_end(monkeypatch):
    """hochreiter1997's rows: an LSTM that never solved T=100 while still improving at its
    last step is not reproduced by its budget, and the row says so; the GRU converged."""
    monkeypatch.setattr(published, "batch_size", lambda sweep: 64)
    monkeypatch.setattr(published, "sequences_to_solve",
                        lambda runs, batch: np.array([math.nan, math.nan]))
    runs = [{"tags.cell": c, "condition": "large T=100", "metrics.test_acc": acc,
             "params.budget_steps": "5000"}
            for c, acc in [("lstm", 0.3), ("lstm", 0.4), ("gru", 0.99), ("gru", 0.99)]]
    sweep = _sweep(runs)
    sweep.parents = pd.DataFrame([
        {"condition": "large T=100", "tags.profile": "x", "tags.cell": c, "run_id": f"p-{c}",
         "tags.best_trial_run_id": f"t-{c}"} for c in ("lstm", "gru")])
    sweep.trials = pd.DataFrame([
        {"run_id": f"t-{c}", "tags.mlflow.parentRunId": f"p-{c}", "metrics.best_step": 4950.0,
         "params.budget_steps": "5000"} for c in ("lstm", "gru")])
    # The LSTM's validation still fell steeply at the end; the GRU's had flattened.
    sweep.curves = {"t-lstm": {sweep.metric: [(100, 0.17), (4400, 0.12), (4950, 0.05)]},
                    "t-gru": {sweep.metric: [(100, 0.17), (4400, 1e-4), (4950, 9e-5)]}}
    out = published.compare_rows(sweep, _rows("hochreiter1997").iloc[:1], pd.DataFrame())
    assert out["verdict"].iloc[0] == published.NOT_REPRODUCED
    evidence = out["evidence"].iloc[0]
    assert "not converged: lstm (still improving in the last 10 %" in evidence
    assert "gru" not in evidence.split("not converged:")[1]
    # What each seed could see against the published 74,000 sequences: 5,000 x 64.
    assert "budget 320,000 training sequences per seed, 4.3x the published" in evidence


def test_a_direction_row_plans_the_seeds_that_would_detect_the_published_gap():
    """chung2014 publishes rnn 9.19 against gru 8.54: the row says from how many seeds per cell
    a one-sided Welch test at Holm's strictest level would detect a 0.65 gap with 80 % power
    given the seeds' spreads. With equal spreads it agrees with the exact power of the
    two-sample t test (noncentral t) within one seed; a noisier cell needs more seeds."""
    from scipy import stats

    def exact_seeds(gap: float, sd: float, alpha: float, power: float = 0.8) -> int:
        for n in range(2, 200):
            df = 2 * n - 2
            nc = gap / (sd * math.sqrt(2 / n))
            if stats.nct.sf(stats.t.ppf(1 - alpha, df), df, nc) >= power:
                return n
        raise AssertionError("not within 200 seeds")

    def rows_with(rnn: list[float], gru: list[float]) -> pd.DataFrame:
        runs = [{"tags.cell": c, "condition": "large", "metrics.test_loss": v}
                for c, vs in {"rnn": rnn, "gru": gru, "lstm": [8.6, 8.7, 8.8]}.items()
                for v in vs]
        return published.compare_rows(_sweep(runs), _rows("chung2014"), pd.DataFrame())

    out = rows_with([9.0, 9.3, 9.6], [8.4, 8.7, 9.0])  # sd 0.3 in both
    gru_row = out[out["result"].str.startswith("gru")]["evidence"].iloc[0]
    m = int(gru_row.split("Holm level ")[1].split(" of ")[1].split(" ")[0])
    assert "a gap as large as the published one (0.65) is detectable at 80% power" in gru_row
    planned = int(gru_row.split("detectable at 80% power")[1].split("from ")[1].split(" ")[0])
    assert abs(planned - exact_seeds(0.65, 0.3, 0.05 / m)) <= 1
    noisy = rows_with([8.0, 9.3, 10.6], [8.4, 8.7, 9.0])
    gru_noisy = noisy[noisy["result"].str.startswith("gru")]["evidence"].iloc[0]
    more = int(gru_noisy.split("detectable at 80% power")[1].split("from ")[1].split(" ")[0])
    assert more > planned


def test_a_direction_row_says_how_much_of_each_search_finished():
    """The row names each compared cell's complete trials and how many of them the sampler's
    model proposed (fair_pruner), so an unequal search shows beside the verdict."""
    runs = _weiss_runs([300, 320], [100, 110])
    sweep = _sweep(runs)
    sweep.parents = pd.DataFrame([
        {"condition": "large", "tags.profile": "x", "tags.cell": c, "run_id": f"p-{c}",
         "metrics.n_complete": done, "metrics.n_sampler_complete": own,
         "metrics.n_pruned": pruned, "metrics.n_failed": 0.0}
        for c, done, own, pruned in (("lstm", 6.0, 2.0, 2.0), ("gru", 4.0, 0.0, 4.0))])
    out = published.compare_rows(sweep, _rows("weiss2018", "test_count_beyond"), pd.DataFrame())
    assert ("searches: lstm 6 complete of 8 trials (2 proposed by the sampler's model), "
            "gru 4 complete of 8 trials (0 proposed by the sampler's model)") in \
        out["evidence"].iloc[0]
    # A profile that runs the paper's one configuration has no search to weigh.
    sweep.space = {"lr": {"type": "float", "low": 1e-2, "high": 1e-2},
                   "hidden_size": {"type": "int", "low": 10, "high": 10}}
    out = published.compare_rows(sweep, _rows("weiss2018", "test_count_beyond"), pd.DataFrame())
    evidence = out["evidence"].iloc[0]
    assert "no search: every cell runs the profile's one fixed configuration" in evidence
    assert "searches:" not in evidence
