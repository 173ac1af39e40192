"""search.warm_start_from (issue 16, item 2): a new study's first trials are the best
configurations of the same cell's study at another data size, queued once, recorded on the
study; off when unset."""

from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf

from rnnsweep.search.warm_start import OFF, WARM_ATTR, best_configurations, source_name

CONDITION = {"task": "adding", "size": "small", "T": "20"}


@pytest.fixture
def typed(tmp_path, monkeypatch):
    """typed(*overrides, warm=None, top_k=None): the typed smoke config, with the warm-start
    keys set when given (on a plain copy: the typed schema, rnnsweep/schema.py, does not
    declare them yet)."""
    from conftest import ROOT
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from rnnsweep.job import typed_config

    monkeypatch.setenv("RNNSWEEP_ROOT", str(tmp_path))

    def make(*overrides: str, warm: str | None = None, top_k: int | None = None):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
                cfg = typed_config(compose("config", overrides=["experiment=smoke",
                                                                 *overrides]))
        finally:
            GlobalHydra.instance().clear()
        if warm is None and top_k is None:
            return cfg
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        if warm is not None:
            cfg.search.warm_start_from = warm
        if top_k is not None:
            cfg.search.warm_start_top_k = top_k
        return cfg
    return make


def _open(cfg, url: str, size: str) -> optuna.Study:
    from rnnsweep.job import study_settings
    from rnnsweep.search.study import full_study_name, open_study

    storage = optuna.storages.RDBStorage(url)
    spec = study_settings(cfg)
    return open_study(spec, full_study_name(spec, {**CONDITION, "size": size}, storage), storage)


def _fill(study: optuna.Study, cfg, rows: list[tuple[dict, float | None]]) -> None:
    """Trials with these params and values (None: pruned), sampled through the space."""
    from rnnsweep.search import space as search_space

    for params, value in rows:
        study.enqueue_trial(params)
        trial = study.ask()
        assert search_space.suggest(trial, cfg.search.space) == params
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)


def _params(space, hidden: int, lr: float) -> dict:
    low = {name: p.low for name, p in space.items()}
    return {**low, "hidden_size": hidden, "lr": lr}


def _suggest_all(study: optuna.Study, cfg) -> list[dict]:
    from rnnsweep.search import space as search_space

    out = []
    while any(t.state == optuna.trial.TrialState.WAITING
              for t in study.get_trials(deepcopy=False)):
        trial = study.ask()
        out.append(search_space.suggest(trial, cfg.search.space))
        study.tell(trial, 1.0)
    return out


def test_large_study_starts_with_the_small_studys_best_configurations_once(typed, tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    cold = typed()
    space = cold.search.space
    hi = int(space.hidden_size.high)
    small = _open(cold, url, "small")
    rows = [(_params(space, hi, 1e-3), 0.30), (_params(space, hi - 1, 2e-3), 0.10),
            (_params(space, hi - 2, 3e-3), None), (_params(space, hi - 3, 4e-3), 0.20),
            # a repeat of the best: queued once
            (_params(space, hi - 1, 2e-3), 0.10)]
    _fill(small, cold, rows)
    assert small.user_attrs.get(WARM_ATTR) is None  # off: nothing recorded, nothing queued

    warm = typed(warm="small", top_k=2)
    large = _open(warm, url, "large")
    record = large.user_attrs[WARM_ATTR]
    assert record == f"{small.study_name} top 2 (trials 1,3)"
    assert large.study_name == small.study_name.replace("-small-", "-large-")
    # A second worker opening the same study queues nothing more.
    again = _open(warm, url, "large")
    assert again.user_attrs[WARM_ATTR] == record
    waiting = [t for t in large.get_trials(deepcopy=False)
               if t.state == optuna.trial.TrialState.WAITING]
    assert len(waiting) == 2
    # The study's first trials sample exactly those configurations, best first.
    assert _suggest_all(large, warm) == [rows[1][0], rows[3][0]]


@pytest.mark.slow  # trains or runs a study in-process for seconds
def test_each_cell_takes_from_its_own_cell_only(typed, tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    for cell, hidden in (("lstm", 17), ("gru", 19)):
        cfg = typed(f"cell={cell}")
        _fill(_open(cfg, url, "small"), cfg, [(_params(cfg.search.space, hidden, 1e-3), 0.1)])
    for cell, hidden in (("lstm", 17), ("gru", 19)):
        cfg = typed(f"cell={cell}", warm="small", top_k=3)
        large = _open(cfg, url, "large")
        assert f"-{cell}-" in large.user_attrs[WARM_ATTR]
        assert [p["hidden_size"] for p in _suggest_all(large, cfg)] == [hidden]


def test_nothing_queued_when_off_missing_or_resumed(typed, tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    off = _open(typed(), url, "large")
    assert WARM_ATTR not in off.user_attrs and not off.get_trials()

    missing = _open(typed(warm="small"), url, "medium")
    assert missing.user_attrs[WARM_ATTR].startswith("none: no study adding-small-lstm")
    assert not missing.get_trials()

    # A study that already has trials (run before the option was set) is left alone.
    cfg = typed()
    _fill(_open(cfg, url, "small"), cfg, [(_params(cfg.search.space, 16, 1e-3), 0.1)])
    _fill(off, cfg, [(_params(cfg.search.space, 20, 1e-3), 0.2)])
    resumed = _open(typed(warm="small"), url, "large")
    assert resumed.user_attrs[WARM_ATTR] == "skipped: study already had trials"
    assert len(resumed.get_trials()) == 1


def test_source_configurations_outside_the_space_are_not_queued(typed, tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    cfg = typed()
    space = cfg.search.space
    src = optuna.create_study(storage=url, study_name="adding-small-lstm-T20")
    inside = _params(space, int(space.hidden_size.high), 1e-3)
    outside = {**inside, "hidden_size": int(space.hidden_size.high) * 4}
    src.add_trial(optuna.trial.create_trial(params=outside, value=0.01, distributions={
        n: optuna.distributions.IntDistribution(1, 10_000) if n != "dropout" and n != "lr"
        else optuna.distributions.FloatDistribution(0.0, 1.0) for n in outside}))
    src.add_trial(optuna.trial.create_trial(params=inside, value=0.2, distributions={
        n: optuna.distributions.IntDistribution(1, 10_000) if n != "dropout" and n != "lr"
        else optuna.distributions.FloatDistribution(0.0, 1.0) for n in inside}))
    assert [n for n, _ in best_configurations(src, space, 3)] == [1]


def test_source_name_replaces_the_size_or_takes_a_study_name():
    assert source_name("adding-large-gru-T20", "small") == "adding-small-gru-T20"
    assert source_name("adding-large-gru-T20-matched", "small") == \
        "adding-small-gru-T20-matched"
    assert source_name("adding-large-gru-T20", "other-study-x") == "other-study-x"
    assert OFF == "off"
