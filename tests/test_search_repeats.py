"""search.repeats=k: k independent searches per study, pooled by the report (issue "Sound
evidence", item 5)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from conftest import refused_before_heavy_imports, run_train
from omegaconf import OmegaConf
from store_checks import mlflow_url, optuna_url

from rnnsweep.errors import ConfigError
from rnnsweep.job import fixed_settings, study_settings
from rnnsweep.overrides import expand_repeats
from rnnsweep.report.bookkeeping import primary_parents
from rnnsweep.report.collect import Sweep, condition_label
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.render import Document, to_html, to_markdown
from rnnsweep.report.sequential import seed_plan
from rnnsweep.report.tables import summary, tuned_optima
from rnnsweep.report.tuning import HEADING, section
from rnnsweep.search.repeats import SEED_SPAN, search_group, search_repeat, study_seed
from rnnsweep.search.study import full_study_name, make_sampler, study_name
from rnnsweep.seed_rounds import pending_studies

CONDITION = {"task": "adding", "size": "small", "T": "50"}


# -- the command line: search.repeats=k is the sweep axis search.repeat=0..k-1 ---------------
def test_repeats_expand_into_the_sweep_over_search_repeat():
    assert expand_repeats(["-m", "cell=lstm,gru", "search.repeats=3"]) == [
        "-m", "cell=lstm,gru", "search.repeat=0,1,2"]
    assert expand_repeats(["-m", "search.repeats=1"]) == ["-m", "search.repeat=0"]
    assert expand_repeats(["cell=gru"]) == ["cell=gru"]  # nothing to expand


@pytest.mark.parametrize(("argv", "expected"), [
    (["-m", "search.repeats=0"], "an integer >= 1"),
    (["-m", "search.repeats=-2"], "an integer >= 1"),
    (["-m", "search.repeats=two"], "an integer >= 1"),
    (["search.repeats=2"], "needs -m (multirun)"),
    (["-m", "search.repeats=2", "search.repeat=1"], "not both"),
])
def test_a_bad_number_of_repeats_is_refused_in_one_line(argv, expected):
    with pytest.raises(ConfigError, match="search.repeats") as err:
        expand_repeats(argv)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_repeats_from_the_command_line_exit_2_in_one_line_before_anything(project):
    lines = refused_before_heavy_imports(project, "-m", "search.repeats=0", "experiment=smoke")
    assert len(lines) == 1 and lines[0].startswith("error: search.repeats=0:"), lines
    assert not (project / "mlruns").exists() and not (project / "outputs").exists()


def test_a_repeat_out_of_range_is_refused(typed):
    with pytest.raises(ConfigError, match=r"search.repeat=-1 is invalid"):
        typed("search.repeat=-1")
    with pytest.raises(ConfigError, match=r"search.repeat=3000 is invalid: must be an integer"):
        typed("search.repeat=3000")


# -- one study per repeat: its name, sampler seed and training seeds --------------------------
def test_repeat_zero_keeps_todays_study_name_and_others_get_a_suffix(typed):
    def name(*overrides: str) -> str:
        return full_study_name(study_settings(typed(*overrides)), CONDITION, None)

    today = study_name(CONDITION, "lstm")
    assert name() == today
    assert name("search.repeat=0") == today
    assert name("search.repeat=2") == today + "-r2"
    # before -matched, which the report reads last
    matched = name("search.repeat=1", "search.match_params=true")
    assert matched == today + "-r1-matched"
    assert search_group(matched, "1") == today + "-matched"


def test_search_group_strips_only_the_repeat_suffix():
    assert search_group("adding-small-lstm-T50-r1", 1) == "adding-small-lstm-T50"
    assert search_group("adding-small-lstm-T50-r1-s0123abcd", "1") == \
        "adding-small-lstm-T50-s0123abcd"
    # a data field that looks like a suffix stays, and repeat 0 (or none) names itself
    assert search_group("anbn-small-lstm-r1-r2", 2) == "anbn-small-lstm-r1"
    assert search_group("anbn-small-lstm-r1", 0) == "anbn-small-lstm-r1"
    assert search_group("adding-small-lstm", float("nan")) == "adding-small-lstm"


def _proposals(cfg) -> list[dict]:  # noqa: ANN001 - a typed config
    """Four trials of a fresh in-memory study with the config's sampler."""
    study = optuna.create_study(sampler=make_sampler(cfg.search))
    for _ in range(4):
        t = study.ask()
        t.suggest_float("lr", 1e-4, 1e-2, log=True)
        t.suggest_int("hidden_size", 8, 32)
        study.tell(t, 1.0)
    return [t.params for t in study.trials]


def test_each_repeat_samples_from_its_own_seed(typed):
    base, again = _proposals(typed()), _proposals(typed("search.repeat=0"))
    one, two = _proposals(typed("search.repeat=1")), _proposals(typed("search.repeat=2"))
    assert base == again  # repeat 0 is today's sampler
    assert base != one and one != two and base != two
    assert _proposals(typed("search.repeat=1")) == one  # and reproducible


def test_each_repeat_trains_with_its_own_seeds_and_the_same_fixed_settings(typed):
    from rnnsweep.search.objective import trial_seed
    from rnnsweep.search.reeval import reeval_seeds

    r0, r1 = typed("search.repeat=0"), typed("search.repeat=1")
    seed0 = study_seed(r0.seed, search_repeat(r0.search))
    seed1 = study_seed(r1.seed, search_repeat(r1.search))
    assert seed0 == r0.seed and seed1 == r1.seed + SEED_SPAN and r1.seed == r0.seed
    seeds0 = {trial_seed(seed0, k) for k in range(100)} | set(reeval_seeds(seed0, r0.search))
    seeds1 = {trial_seed(seed1, k) for k in range(100)} | set(reeval_seeds(seed1, r1.search))
    assert not seeds0 & seeds1
    # not a fixed setting: the repeats of a condition measure the same thing
    assert fixed_settings(r0) == fixed_settings(r1)


# -- the report: repeats pooled into one condition ----------------------------------------
SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
         "hidden_size": {"type": "int", "low": 8, "high": 32}}


def make_sweep(test: dict[tuple[str, int], list[float]], best_val: dict | None = None) -> Sweep:
    """Studies (cell, repeat) of the condition 'small', one finished re-evaluation of the
    current best (trial 3) per value."""
    parents, reevals = [], []
    for (cell, repeat), values in test.items():
        name = f"adding-small-{cell}" + (f"-r{repeat}" if repeat else "")
        parents.append({
            "run_id": name, "tags.cell": cell, "tags.data_size": "small",
            "tags.study_name": name, "tags.search_repeat": str(repeat),
            "tags.best_trial_number": "3", "tags.sweep_id": "s1", "start_time": repeat,
            "metrics.best_val_loss": (best_val or {}).get((cell, repeat), 0.01 * (repeat + 1)),
            "metrics.baseline_loss": 0.17, "metrics.n_complete": 6.0,
            "tags.search_sampler": "tpe", "tags.best.lr": f"{0.001 * (repeat + 1)}",
            "tags.best.hidden_size": str(16 + repeat)})
        for i, v in enumerate(values):
            reevals.append({"run_id": f"{name}-e{i}", "tags.mlflow.parentRunId": name,
                            "tags.cell": cell, "tags.data_size": "small", "status": "FINISHED",
                            "tags.state": "COMPLETE", "tags.best_trial_number": "3",
                            "tags.role": "reeval", "metrics.test_loss": v,
                            "metrics.best_val_loss": v})
    p, r = pd.DataFrame(parents), pd.DataFrame(reevals)
    for df in (p, r):
        df["condition"] = [condition_label(row, []) for _, row in df.iterrows()]
    return Sweep("adding", "s1", "val_loss", "minimize", SPACE, p, pd.DataFrame(), r)


LSTM0, LSTM1 = [0.010, 0.011, 0.012], [0.020, 0.021, 0.022]
GRU0, GRU1 = [0.012, 0.013, 0.014], [0.015, 0.016, 0.017]
REPEATED = {("lstm", 0): LSTM0, ("lstm", 1): LSTM1, ("gru", 0): GRU0, ("gru", 1): GRU1}


def test_the_claims_pool_every_repeats_seeds_in_one_condition():
    ev = Evidence(make_sweep(REPEATED))
    assert ev.conditions() == ["small"] and ev.cells("small") == ["gru", "lstm"]
    assert len(primary_parents(ev.sweep.parents)) == 4  # both repeats of each cell kept
    assert sorted(ev.values("lstm", "small", "metrics.test_loss")) == sorted(LSTM0 + LSTM1)
    assert ev.seeds("gru", "small") == (6, 0, [])
    assert ev.repeats() == 2 and "2 independent searches" in ev.pooled_text()
    single = Evidence(make_sweep({("lstm", 0): LSTM0, ("gru", 0): GRU0}))
    assert single.repeats() == 1 and single.pooled_text() == ""


def test_the_summary_has_one_row_per_cell_with_the_pooled_seeds():
    s = summary(make_sweep(REPEATED), "test_loss")
    assert list(s["cell"]) == ["gru", "lstm"] and list(s["searches"]) == [2, 2]
    lstm = s.set_index("cell").loc["lstm"]
    assert lstm["reeval_n"] == 6 and lstm["complete"] == 12
    assert lstm["test_mean"] == pytest.approx(sum(LSTM0 + LSTM1) / 6)
    assert lstm["best_trial_val"] == pytest.approx(0.01)  # the best repeat's best trial
    assert lstm["study"] == "adding-small-lstm, adding-small-lstm-r1"


def test_the_tuned_optimum_table_shows_each_search_and_their_spread(tmp_path: Path):
    sweep = make_sweep(REPEATED, best_val={("lstm", 0): 0.03, ("lstm", 1): 0.02})
    long = tuned_optima(sweep, "test_loss")
    assert len(long) == 4 and set(long["searches"]) == {2}
    lstm = long[long["cell"] == "lstm"].set_index("repeat")
    assert lstm.loc[1, "test_mean"] == pytest.approx(0.021) and lstm.loc[1, "n"] == 3
    assert lstm.loc[1, "params"] == "lr=0.002 hidden_size=17"
    doc = Document()
    section(doc, sweep, "test_loss", tmp_path)
    md, html = to_markdown(doc, tmp_path), to_html(doc, "t")
    assert f"### {HEADING}" in md and HEADING in html
    row = next(line for line in md.splitlines() if line.startswith("| small | lstm |"))
    assert "| 2 |" in row and "0.03 / 0.02 *" in row  # r1 had the better validation
    assert "0.011 (n=3) / 0.021 (n=3)" in row and "0.016 ± 0.0071 (0.011-0.021)" in row
    assert "r0: lr=0.001 hidden_size=16; r1: lr=0.002 hidden_size=17" in row
    assert (tmp_path / "tuned_optima.csv").exists()


def test_no_tuned_optimum_table_without_repeats(tmp_path: Path):
    doc = Document()
    assert section(doc, make_sweep({("lstm", 0): LSTM0, ("gru", 0): GRU0}), "test_loss",
                   tmp_path).empty
    assert doc.blocks == [] and not (tmp_path / "tuned_optima.csv").exists()


# -- sequential seeds: a pair of cells, each pooling its repeats ----------------------------
class FakeClient:
    """search_runs of seed_rounds._values: the finished re-evaluations of one parent."""

    def __init__(self, values: dict[str, list[float]]) -> None:
        self.values = values

    def search_runs(self, experiment_ids, filter_string, max_results):  # noqa: ANN001
        parent = re.search(r"parentRunId`? = '([^']+)'", filter_string).group(1)
        return [SimpleNamespace(data=SimpleNamespace(metrics={"test_loss": v}))
                for v in self.values[parent]]


def _parent(run_id: str, cell: str, repeat: int) -> SimpleNamespace:
    tags = {"cell": cell, "data_size": "small", "study_name": run_id,
            "search_repeat": str(repeat), "best_trial_number": "3"}
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, experiment_id="1"),
                           data=SimpleNamespace(tags=tags, metrics={"baseline_loss": 0.17}))


def test_seed_rounds_compare_cells_over_their_repeats_not_repeats_of_one_cell():
    config = OmegaConf.create({"report": {"alpha": 0.05, "test_metric": "test_loss"}})
    plan = seed_plan({"reeval_seeds": 3, "reeval_max_seeds": 5, "reeval_seed_step": 2}, 0.05)
    parents = [_parent("lstm", "lstm", 0), _parent("lstm-r1", "lstm", 1),
               _parent("gru", "gru", 0), _parent("gru-r1", "gru", 1)]
    # Repeats of one cell far apart, the cells' pools alike: undecided, all four get seeds
    # (a comparison of lstm r0 with lstm r1 would have called it different and stopped).
    close = FakeClient({"lstm": [0.010, 0.011, 0.012], "lstm-r1": [0.020, 0.021, 0.022],
                        "gru": [0.010, 0.0115, 0.012], "gru-r1": [0.020, 0.0205, 0.022]})
    assert pending_studies(close, parents, plan, config) == {"lstm", "lstm-r1", "gru",
                                                             "gru-r1"}
    # The cells' pools far apart: decided at the first look (6 seeds per cell), no round.
    apart = FakeClient({"lstm": [0.010, 0.011, 0.012], "lstm-r1": [0.011, 0.012, 0.010],
                        "gru": [0.100, 0.110, 0.120], "gru-r1": [0.110, 0.120, 0.100]})
    assert pending_studies(apart, parents, plan, config) == set()
    # One study per cell, as before repeats: the plan's looks are per cell.
    singles = [_parent("lstm", "lstm", 0), _parent("gru", "gru", 0)]
    assert pending_studies(close, singles, plan, config) == {"lstm", "gru"}
    assert pending_studies(apart, singles, plan, config) == set()


# -- end to end: two studies, resumed by a rerun ------------------------------------------
@pytest.mark.slow
def test_two_repeats_run_two_studies_pooled_by_the_report_and_resume(project):
    args = ("-m", "cell=lstm", "experiment=smoke", "data.size=small", "search.repeats=2",
            "search.n_trials=2", "search.reeval_seeds=2")
    proc = run_train(project, *args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    storage = optuna_url(project)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert len(names) == 2 and names[1] == names[0] + "-r1", names
    assert not names[0].endswith("-r0")  # repeat 0 keeps today's name
    first = {n: optuna.load_study(study_name=n, storage=storage).trials[0].params
             for n in names}
    assert first[names[0]] != first[names[1]]  # their own sampler seeds

    from mlflow.tracking import MlflowClient

    from rnnsweep.report.collect import load_sweep

    client = MlflowClient(tracking_uri=mlflow_url(project))
    exp = client.get_experiment_by_name("adding")
    parents = client.search_runs([exp.experiment_id], "tags.role = 'study'")
    assert sorted(p.data.tags["search_repeat"] for p in parents) == ["0", "1"]
    trials = client.search_runs([exp.experiment_id], "tags.role = 'trial'")
    seeds = {r.data.tags["study_name"]: set() for r in trials}
    for r in trials:
        seeds[r.data.tags["study_name"]].add(int(r.data.params["seed"]))
    assert not seeds[names[0]] & seeds[names[1]]  # their own trial seeds

    sweep = load_sweep(mlflow_url(project), "adding")
    ev = Evidence(sweep)
    assert ev.conditions() == ["small"] and len(ev.studies("lstm", "small")) == 2
    assert len(ev.values("lstm", "small", "metrics.test_loss")) == 2 * 2
    doc = Document()
    long = section(doc, sweep, "test_loss", project)
    assert list(long["repeat"]) == [0, 1] and list(long["n"]) == [2, 2]
    assert f"### {HEADING}" in to_markdown(doc, project)
    assert list(summary(sweep, "test_loss")["reeval_n"]) == [4]

    # The same command again: both studies resume, complete, and nothing is added.
    before = {role: len(client.search_runs([exp.experiment_id], f"tags.role = '{role}'"))
              for role in ("study", "trial", "reeval")}
    again = run_train(project, *args, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(storage)) == names
    assert all(len(optuna.load_study(study_name=n, storage=storage).trials) == 2
               for n in names)
    after = {role: len(client.search_runs([exp.experiment_id], f"tags.role = '{role}'"))
             for role in ("study", "trial", "reeval")}
    assert after == before == {"study": 2, "trial": 4, "reeval": 4}


class SeededClient:
    """search_runs of seed_rounds._keyed: each parent's finished re-evaluations, tagged with
    their seed, carrying test_loss and gap_at_best."""

    def __init__(self, runs: dict[str, list[tuple[float, float]]]) -> None:
        self.runs = runs

    def search_runs(self, experiment_ids, filter_string, max_results):  # noqa: ANN001
        parent = re.search(r"parentRunId`? = '([^']+)'", filter_string).group(1)
        return [SimpleNamespace(data=SimpleNamespace(
            metrics={"test_loss": loss, "gap_at_best": gap},
            tags={"reeval_seed": str(1_000_000 + i)}))
            for i, (loss, gap) in enumerate(self.runs[parent])]


def _sized(cell: str, size: str) -> SimpleNamespace:
    p = _parent(f"{cell}-{size}", cell, 0)
    p.data.tags.update({"data_size": size, "data.n": "200" if size == "small" else "4000",
                        "data.T": "20"})
    return p


def test_seed_rounds_continue_while_the_overfitting_interaction_is_undecided():
    config = OmegaConf.create({"report": {"alpha": 0.05, "test_metric": "test_loss"}})
    plan = seed_plan({"reeval_seeds": 5, "reeval_max_seeds": 19, "reeval_seed_step": 7}, 0.05)
    parents = [_sized(c, s) for c in ("lstm", "gru") for s in ("small", "large")]
    draw = [0.02, 0.09, 0.04, 0.07, 0.03]  # each seed's draw moves both cells' gaps alike
    # test losses 10x apart: the comparable pairs are decided at every size
    loss = {"lstm": 0.01, "gru": 0.1}

    def runs(lstm_extra: list[float]) -> SeededClient:
        out = {}
        for cell in ("lstm", "gru"):
            extra = lstm_extra if cell == "lstm" else [0.0] * 5
            out[f"{cell}-small"] = [(loss[cell] * (1 + 0.01 * i), g + e)
                                    for i, (g, e) in enumerate(zip(draw, extra, strict=True))]
            out[f"{cell}-large"] = [(loss[cell] * (1 + 0.01 * i), 0.01 + 0.001 * i)
                                    for i in range(5)]
        return SeededClient(out)

    # the LSTM's small-data gap above the GRU's by 0.03 on every seed: decided
    assert pending_studies(runs([0.030, 0.031, 0.029, 0.030, 0.0305]), parents, plan,
                           config) == set()
    # by -0.02 to +0.02: the interaction is open, all four studies get seeds
    assert pending_studies(runs([0.02, -0.02, 0.015, -0.01, 0.0]), parents, plan, config) \
        == {"lstm-small", "lstm-large", "gru-small", "gru-large"}


def test_an_interaction_with_too_few_learned_seeds_stays_pending_and_an_unlearned_one_not():
    """The LSTM learned on 2 of its 5 small-data seeds (the others at the trivial loss 0.17,
    as on noisy adding at T=40): fewer learned seeds than the first look is not a decision,
    so the four studies get more seeds. A cell whose mean stayed at the trivial loss leaves
    the size pair out of the report, and of the rounds."""
    config = OmegaConf.create({"report": {"alpha": 0.05, "test_metric": "test_loss"}})
    plan = seed_plan({"reeval_seeds": 5, "reeval_max_seeds": 19, "reeval_seed_step": 7}, 0.05)
    parents = [_sized(c, s) for c in ("lstm", "gru") for s in ("small", "large")]
    # test losses 10x apart (the GRU lower): every comparable pair is decided, so only the
    # interaction can keep a study pending
    loss = {"lstm": 0.05, "gru": 0.005}

    def client(lstm_small_losses: list[float]) -> SeededClient:
        out = {f"{c}-{s}": [(loss[c] * (1 + 0.01 * i), 0.02 + 0.001 * i) for i in range(5)]
               for c in ("lstm", "gru") for s in ("small", "large")}
        out["lstm-small"] = [(v, 0.02) for v in lstm_small_losses]
        return SeededClient(out)

    mixed = client([0.05, 0.17, 0.05, 0.17, 0.17])  # mean 0.122 < 0.9 x 0.17: learned
    assert pending_studies(mixed, parents, plan, config) == {
        "lstm-small", "lstm-large", "gru-small", "gru-large"}
    stuck = client([0.17, 0.171, 0.169, 0.17, 0.17])  # the LSTM did not learn small data
    assert pending_studies(stuck, parents, plan, config) == set()
