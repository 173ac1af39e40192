"""A study records its fixed settings; a rerun with other ones is refused with one line
naming the keys and their old and new values, or (search.on_changed_settings=new_study)
opens a study of its own (issue 12, item 5)."""

from __future__ import annotations

import json

import optuna
import pytest
from conftest import run_train
from store_checks import all_runs, finished_snapshot, mlflow_url, optuna_url, trials_by_study

from rnnsweep.errors import ConfigError


def test_fixed_settings_hold_what_changes_a_trial_and_nothing_else(typed):
    from rnnsweep.job import fixed_settings

    settings = fixed_settings(typed())
    for key in ("optim._target_", "optim.weight_decay", "trainer._target_", "trainer.max_steps",
                "trainer.precision", "trainer.val_check_steps", "data.batch_size", "data.seq_len",
                "cell.name", "cell._target_", "cell.forget_bias", "seed", "search.metric"):
        assert key in settings, key
    # Sampled by the space, or not a setting of training at all.
    for key in ("model.hidden_size", "model.num_layers", "model.dropout", "optim.lr",
                "trainer.num_threads", "trainer.progress_bar", "search.n_trials",
                "tracking.uri", "search.heartbeat_interval"):
        assert key not in settings, key
    # Parameter-matched: the budget is sampled and decides the hidden size.
    matched = fixed_settings(typed("search.match_params=true"))
    assert "model.param_budget" not in matched and "model.hidden_size" not in matched


@pytest.mark.parametrize("override", [
    "search.n_trials=7", "trainer.num_threads=1", "search.heartbeat_interval=2",
    "search.reeval_seeds=0", "search.max_failure_rate=0.9", "trainer.progress_bar=true",
    "report.alpha=0.01", "search.space.hidden_size.high=16",
])
def test_what_is_not_a_setting_does_not_change_them(typed, override):
    from rnnsweep.job import fixed_settings

    assert fixed_settings(typed(override)) == fixed_settings(typed())


def test_study_names_and_settings_hashes_stay_what_existing_stores_hold(typed):
    """A rerun finds its study by name, in new_study mode by the settings' hash: a change
    to either strands every stored study (literals from before the config was split into
    nodes)."""
    from rnnsweep.job import fixed_settings, study_settings
    from rnnsweep.search.settings import settings_hash
    from rnnsweep.search.study import full_study_name

    assert settings_hash(fixed_settings(typed())) == "cccc9541"
    assert settings_hash(fixed_settings(typed("search.match_params=true"))) == "77777a70"
    assert settings_hash(fixed_settings(typed("cell=gru", "optim=sgd"))) == "a622a9b5"
    condition = {"task": "adding", "size": "small", "T": "20"}
    cfg = typed("search.repeat=1", "search.match_params=true")
    assert full_study_name(study_settings(cfg), condition, None) == \
        "adding-small-lstm-T20-r1-matched"


def _study(cfg, url: str):
    from rnnsweep.job import study_settings
    from rnnsweep.search.study import full_study_name, open_study

    storage = optuna.storages.RDBStorage(url)
    condition = {"task": "adding", "size": "small", "T": "20"}
    spec = study_settings(cfg)
    return open_study(spec, full_study_name(spec, condition, storage), storage)


@pytest.mark.parametrize(("overrides", "expected"), [
    (["optim.weight_decay=0.1", "trainer.max_steps=20"],
     'optim.weight_decay, trainer.max_steps: study \'adding-small-lstm-T20\' in this storage '
     'was run with other fixed settings (optim.weight_decay 0.0 -> 0.1, trainer.max_steps 30 '
     '-> 20)'),
    (["optim=sgd"], 'optim._target_ "torch.optim.Adam" -> "torch.optim.SGD"'),
    (["+trainer.accumulate_grad_batches=2"], 'trainer.accumulate_grad_batches "absent" -> 2'),
    (["data.batch_size=8"], 'data.batch_size: study'),
    (["seed=3"], "seed: study"),
    (["cell.forget_bias=0.0"], "cell.forget_bias 1.0 -> 0.0"),
    (["search.metric=val_mse"], 'search.metric "val_loss" -> "val_mse"'),
])
def test_a_rerun_with_other_settings_is_refused_naming_them(typed, tmp_path, overrides,
                                                            expected):
    url = f"sqlite:///{tmp_path}/optuna.db"
    first = _study(typed(), url)
    stored = json.loads(first.user_attrs["fixed_settings"])
    assert stored["optim._target_"] == "torch.optim.Adam" and stored["trainer.max_steps"] == 30
    with pytest.raises(ConfigError) as err:
        _study(typed(*overrides), url)
    message = str(err.value)
    assert expected in message and "\n" not in message, message
    assert "search.on_changed_settings=new_study" in message
    assert len(optuna.get_all_study_summaries(url)) == 1


def test_new_study_mode_opens_a_study_of_its_own_and_finds_it_again(typed, tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    old = _study(typed(), url)
    sgd = ["optim=sgd", "trainer.max_steps=20", "search.on_changed_settings=new_study"]
    new = _study(typed(*sgd), url)
    assert new.study_name.startswith("adding-small-lstm-T20-s") and new.study_name != old.study_name
    assert json.loads(new.user_attrs["fixed_settings"])["optim._target_"] == "torch.optim.SGD"
    assert _study(typed(*sgd), url).study_name == new.study_name  # found again
    # The old settings still reach the old study, in either mode.
    assert _study(typed("search.on_changed_settings=new_study"), url).study_name == old.study_name
    assert _study(typed(), url).study_name == old.study_name
    # Parameter-matched studies keep -matched last (the report reads it).
    _study(typed("search.match_params=true"), url)
    matched = _study(typed("search.match_params=true", *sgd), url).study_name
    assert matched.endswith("-matched") and "-s" in matched


def test_an_unknown_mode_is_refused(typed):
    from rnnsweep.validation import check_values

    with pytest.raises(ConfigError, match="search.on_changed_settings='merge' is invalid: "
                                          "allowed: refuse, new_study"):
        check_values(typed("search.on_changed_settings=merge"))


# -- end to end, the example ----------------------------------------------------------
FIRST = ["experiment=smoke", "cell=lstm", "search.reeval_seeds=0", "search.n_trials=2",
         "trainer.max_steps=30"]
SECOND = ["experiment=smoke", "cell=lstm", "search.reeval_seeds=0", "search.n_trials=2",
          "trainer.max_steps=20", "optim.weight_decay=0.1"]


@pytest.mark.slow
def test_changed_settings_refused_then_run_as_a_new_study(project):
    first = run_train(project, *FIRST)
    assert first.returncode == 0, first.stderr[-3000:]
    before = finished_snapshot(optuna_url(project))
    (old_name,) = before

    refused = run_train(project, *SECOND)
    assert refused.returncode == 2, refused.stderr[-3000:]
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith(
        "error: optim.weight_decay, trainer.max_steps: study"), refused.stderr
    assert "optim.weight_decay 0.0 -> 0.1" in lines[0] and "trainer.max_steps 30 -> 20" in lines[0]
    assert finished_snapshot(optuna_url(project)) == before

    new = run_train(project, *SECOND, "search.on_changed_settings=new_study")
    assert new.returncode == 0, new.stderr[-3000:]
    studies = trials_by_study(optuna_url(project))
    assert len(studies) == 2 and finished_snapshot(optuna_url(project))[old_name] == before[
        old_name]
    parents = {r.data.tags["study_name"]: r for r in all_runs(mlflow_url(project))
               if r.data.tags.get("role") == "study"}
    assert set(parents) == set(studies)
    for name, parent in parents.items():
        shown = json.loads(parent.data.tags["fixed_settings"])
        stored = json.loads(optuna.load_study(study_name=name, storage=optuna_url(project))
                            .user_attrs["fixed_settings"])
        assert shown == stored and parent.data.tags["settings_hash"]
        assert shown["optim.weight_decay"] == (0.0 if name == old_name else 0.1)
        assert shown["trainer.max_steps"] == (30 if name == old_name else 20)
