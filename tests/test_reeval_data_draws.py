"""Each re-evaluation seed of a task that generates its data draws its own data (issue "Sound
evidence", item 5): the spread of the headline numbers then covers the data draw as well as
the initialisation and the batch order.

In-process on a throwaway SQLite MLflow store, with `train_model` replaced by a recorder of
the data each run was given (no training): two seeds see different training, validation and
test sets of the study's sizes, the same seed twice the same sets, the search's data module is
untouched, tasks with fixed or non-random data keep one data set, the `reproduce` tag names the
data seed and passes `make reproduce`'s checks, and search.reeval_draws_data=false restores
one data set for every seed. One slow test reads the same off a real smoke sweep.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_class
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from rnnsweep import reproduce
from rnnsweep.data.base import draw_seed, order_seed
from rnnsweep.data.registry import BUILT_IN, build_datamodule
from rnnsweep.job import train_setup, typed_config
from rnnsweep.search import reeval
from rnnsweep.search import space as search_space
from rnnsweep.search.objective import StudyContext
from rnnsweep.search.reeval import DATA_SEED_TAG, DRAWS_TAG, REEVAL_SEED_OFFSET
from rnnsweep.tracking import Tracker
from rnnsweep.training import TrainResult

SPLITS = ("train", "val", "test")
STUDY_DATA_SEED = 1234  # conf/data/adding.yaml


def compose_typed(root: Path, *overrides: str) -> DictConfig:
    """The typed config train.py would run (smoke sizes), its stores under `root`."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=["experiment=smoke", "cell=gru", *overrides])
    finally:
        GlobalHydra.instance().clear()
    return typed_config(cfg)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One project folder (and MLflow store) for the module: creating a store takes seconds."""
    folder = tmp_path_factory.mktemp("draws")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNNSWEEP_ROOT", str(folder))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # it would win over the config
        yield folder


def tensors(datamodule: Any) -> dict[str, tuple[torch.Tensor, ...]]:
    datamodule.setup()
    return {split: getattr(datamodule, f"{split}_set").tensors for split in SPLITS}


def same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y)
                                    for x, y in zip(a, b, strict=True))


class Study:
    """A study with one complete trial, its parent run and context, and what each
    re-evaluation seed's (faked) training was given."""

    def __init__(self, root: Path, name: str, *overrides: str,
                 job_overrides: tuple[str, ...] = ()) -> None:
        self.cfg = compose_typed(root, *overrides)
        self.datamodule = build_datamodule(self.cfg.data)
        tracker = Tracker(self.cfg.tracking)
        tracker.describe_job(self.datamodule, str(ROOT / "train.py"))
        self.experiment = f"draws-{name}"
        parent = tracker.start_run(self.experiment, name, {"role": "study", "study_name": name})
        self.ctx = StudyContext(
            search=self.cfg.search, setup=train_setup(self.cfg), data=self.cfg.data,
            seed=int(self.cfg.seed), datamodule=self.datamodule, tracker=tracker,
            experiment=self.experiment, parent_run_id=parent, study_name=name,
            base_tags={"study_name": name, "cell": "gru"},
            job_overrides=["cell=gru", "experiment=smoke", *job_overrides])
        self.study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

        def objective(trial: optuna.Trial) -> float:
            search_space.suggest(trial, self.cfg.search.space)
            return 0.1

        self.study.optimize(objective, n_trials=1)
        self.trained: dict[int, dict[str, tuple[torch.Tensor, ...]]] = {}

    def reevaluate(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
        def fake_train(cfg: DictConfig, datamodule: Any, seed: int, **_: Any) -> TrainResult:
            self.trained[seed] = tensors(datamodule)
            return TrainResult(best_value=0.1, best_step=10, gap_at_best=0.0,
                               optimizer_steps=30, budget_steps=30, seconds_per_step=0.01,
                               n_params=10, hidden_size=8, test_metrics={"test_loss": 0.2})

        monkeypatch.setattr(reeval, "train_model", fake_train)
        return reeval.reevaluate(self.study, self.ctx)

    def runs(self) -> list[Any]:
        client = MlflowClient(self.ctx.tracker.uri)
        exp = client.get_experiment_by_name(self.experiment)
        found = client.search_runs([exp.experiment_id], "tags.role = 'reeval'")
        return sorted(found, key=lambda r: int(r.data.tags["reeval_seed"]))


@pytest.fixture(scope="module")
def drawn(root: Path) -> Iterator[Study]:
    """An adding study re-evaluated with the default setting (draws on), two seeds."""
    with pytest.MonkeyPatch.context() as mp:
        study = Study(root, "drawn", job_overrides=("data.seed=1234",))
        study.reevaluate(mp)
        yield study


def test_the_draw_seed_is_a_fixed_child_of_the_run_seed_and_the_data_seed() -> None:
    seeds = [draw_seed(STUDY_DATA_SEED, REEVAL_SEED_OFFSET + k) for k in range(50)]
    assert seeds == [draw_seed(STUDY_DATA_SEED, REEVAL_SEED_OFFSET + k) for k in range(50)]
    assert len(set(seeds)) == 50 and all(0 <= s < 2**32 for s in seeds)
    assert STUDY_DATA_SEED not in seeds
    # Another data.seed changes every draw; the batch order's stream is another one.
    assert not set(seeds) & {draw_seed(7, REEVAL_SEED_OFFSET + k) for k in range(50)}
    assert not set(seeds) & {order_seed(REEVAL_SEED_OFFSET + k) for k in range(50)}


def test_two_seeds_train_and_test_on_different_draws_of_the_studys_sizes(drawn: Study) -> None:
    study = tensors(drawn.datamodule)
    seeds = sorted(drawn.trained)
    assert seeds == [REEVAL_SEED_OFFSET, REEVAL_SEED_OFFSET + 1]
    first, second = (drawn.trained[s] for s in seeds)
    for split in SPLITS:
        assert not same(first[split], second[split]), split
        for own in (first, second):
            assert not same(own[split], study[split]), split
            assert [t.shape for t in own[split]] == [t.shape for t in study[split]]
    # The same distribution: the target is the sum of two U[0, 1] values.
    for own in (first, second):
        x, y, _ = own["train"]
        marked = (x[..., 0] * x[..., 1]).sum(1, keepdim=True)
        assert torch.allclose(marked, y) and 0.5 < float(y.mean()) < 1.5


def test_each_run_records_its_data_seed_and_the_splits_it_trained_on(drawn: Study) -> None:
    runs = drawn.runs()
    assert len(runs) == 2
    data_seeds = []
    for run in runs:
        seed = int(run.data.tags["reeval_seed"])
        expected = draw_seed(STUDY_DATA_SEED, seed)
        assert run.data.params["data.seed"] == str(expected) == run.data.tags[DATA_SEED_TAG]
        assert run.data.tags[DRAWS_TAG] == "true"
        # The run's MLflow datasets are its own draw's, named with its data seed.
        names = {i.dataset.name for i in run.inputs.dataset_inputs}
        assert names == {f"adding-small-T20-n48-seed{expected}-{s}" for s in SPLITS}
        data_seeds.append(expected)
    assert len(set(data_seeds)) == 2
    parent = MlflowClient(drawn.ctx.tracker.uri).get_run(drawn.ctx.parent_run_id)
    assert parent.data.tags[DRAWS_TAG] == "true" and parent.data.metrics["reeval_n"] == 2


def test_the_same_seed_draws_the_same_data_and_the_search_keeps_data_seeds(
        drawn: Study, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = REEVAL_SEED_OFFSET + 1
    again = reeval.reeval_datamodule(drawn.ctx, seed, draws=True)
    assert all(same(tensors(again)[s], drawn.trained[seed][s]) for s in SPLITS)
    # The same command in another store: the same data seeds and the same data.
    other = Study(root, "drawn-again")
    other.reevaluate(monkeypatch)
    assert [r.data.params["data.seed"] for r in other.runs()] == [
        r.data.params["data.seed"] for r in drawn.runs()]
    for s, sets in other.trained.items():
        assert all(same(sets[split], drawn.trained[s][split]) for split in SPLITS)
    # The trials' data module is the study's, drawn from data.seed, untouched by the seeds.
    assert drawn.ctx.datamodule.data_seed() == STUDY_DATA_SEED
    fresh = tensors(build_datamodule(drawn.cfg.data))
    assert all(same(tensors(drawn.ctx.datamodule)[s], fresh[s]) for s in SPLITS)


def test_the_reproduce_tag_names_the_data_seed_and_passes_reproduces_checks(
        drawn: Study, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = drawn.runs()[1]
    tag = run.data.tags["reproduce"]
    words = shlex.split(tag)
    data_seed = run.data.params["data.seed"]
    # The job's own data.seed=1234 is replaced, not repeated.
    assert [w for w in words if w.startswith("data.seed=")] == [f"data.seed={data_seed}"]
    assert f"seed={run.data.tags['reeval_seed']}" in words and "search=none" in words
    monkeypatch.setenv("MLFLOW_TRACKING_URI", drawn.ctx.tracker.uri)
    monkeypatch.delenv("RNNSWEEP_ROOT", raising=False)
    monkeypatch.chdir(ROOT)
    assert reproduce.main([run.info.run_id, "--dry-run"]) == 0, capsys.readouterr().err
    command = shlex.split(capsys.readouterr().err.splitlines()[-1].split(": ", 1)[1])
    assert command[2:] == words[2:]
    # What it would run trains on the run's own draw.
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        single = typed_config(compose("config", overrides=command[2:]))
    GlobalHydra.instance().clear()
    rebuilt = tensors(build_datamodule(single.data))
    assert all(same(rebuilt[s], drawn.trained[int(run.data.tags["reeval_seed"])][s])
               for s in SPLITS)


def test_the_off_switch_gives_every_seed_the_studys_data(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = Study(root, "off", "search.reeval_draws_data=false")
    study.reevaluate(monkeypatch)
    data = tensors(study.datamodule)
    assert len(study.trained) == 2
    for sets in study.trained.values():
        assert all(same(sets[s], data[s]) for s in SPLITS)
    for run in study.runs():
        assert run.data.tags[DRAWS_TAG] == "false"
        assert run.data.params["data.seed"] == run.data.tags[DATA_SEED_TAG] == "1234"
        assert not [w for w in shlex.split(run.data.tags["reproduce"])
                    if w.startswith("data.seed=")]


def test_only_tasks_that_generate_their_data_draw_it(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Chorales and data=file read fixed data; a^n b^n has nothing random to draw.
    assert {name: get_class(target).draws_data for name, target in BUILT_IN.items()} == {
        "adding": True, "anbn": False, "chorales": False, "file": False}
    study = Study(root, "anbn", "data=anbn")
    study.reevaluate(monkeypatch)
    data = tensors(study.datamodule)
    assert len(study.trained) == 2
    for sets in study.trained.values():
        assert all(same(sets[s], data[s]) for s in SPLITS)
    assert {r.data.tags[DRAWS_TAG] for r in study.runs()} == {"false"}


def test_a_study_keeps_the_kind_its_first_seeds_ran_with(
        root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A study re-evaluated before the setting existed (its runs have no reeval_draws_data
    tag) gets its later seeds (a resume, a seed round) on its own data, not a mix."""
    study = Study(root, "older", "search.reeval_seeds=1")
    old = study.ctx.tracker.start_run(study.experiment, "reeval-old", {
        "role": "reeval", "study_name": "older", "reeval_seed": str(REEVAL_SEED_OFFSET),
        "best_trial_number": str(study.study.best_trial.number)},
        parent_id=study.ctx.parent_run_id)
    study.ctx.tracker.end_run(old, "FINISHED")
    study.cfg.search.reeval_seeds = 2  # as a seed round asks for more
    with caplog.at_level("WARNING"):
        study.reevaluate(monkeypatch)
    assert list(study.trained) == [REEVAL_SEED_OFFSET + 1]
    data = tensors(study.datamodule)
    assert all(same(study.trained[REEVAL_SEED_OFFSET + 1][s], data[s]) for s in SPLITS)
    assert "already ran with search.reeval_draws_data=false" in caplog.text
    # A stored config from before the key (what a seed round reads) reads as false.
    assert reeval.configured_draws(OmegaConf.create({})) is False
    assert reeval.configured_draws(OmegaConf.create({"reeval_draws_data": "???"})) is False


@pytest.mark.slow
def test_a_smoke_sweeps_seeds_draw_their_own_data(smoke_sweep: Path) -> None:
    """The real thing: trials on data.seed's data, each re-evaluation seed on its own (the
    datasets each run recorded), the same draw for the same seed in every cell's study."""
    client = MlflowClient(f"sqlite:///{smoke_sweep}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("adding")
    by_seed: dict[tuple[str, str], set[str]] = {}
    for parent in client.search_runs([exp.experiment_id], "tags.role = 'study'"):
        children = client.search_runs(
            [exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        digests: Callable[[Any], dict[str, str]] = lambda r: {  # noqa: E731
            next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset.digest
            for i in r.inputs.dataset_inputs}
        trials = [r for r in children if r.data.tags["role"] == "trial"]
        reevals = [r for r in children if r.data.tags["role"] == "reeval"]
        assert trials and len(reevals) == 2
        study_data = {tuple(sorted(digests(t).items())) for t in trials}
        assert len(study_data) == 1
        assert {t.data.params["data.seed"] for t in trials} == {str(STUDY_DATA_SEED)}
        own = [digests(r) for r in reevals]
        for split in SPLITS:
            assert own[0][split] != own[1][split]
            assert all(o[split] != dict(next(iter(study_data)))[split] for o in own)
        for r in reevals:
            assert r.data.tags[DRAWS_TAG] == "true"
            assert r.data.params["data.seed"] == str(
                draw_seed(STUDY_DATA_SEED, int(r.data.params["seed"])))
            key = (parent.data.tags["data_size"], r.data.params["seed"])
            by_seed.setdefault(key, set()).add(digests(r)["test"])
    # Paired: seed k's test set is the same in the LSTM's and the GRU's study.
    assert by_seed and all(len(d) == 1 for d in by_seed.values())
    assert np.unique([k[1] for k in by_seed]).size == 2
