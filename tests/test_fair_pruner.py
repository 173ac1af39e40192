"""The pruner waits for the sampler's own proposals: every compared cell's study completes
search.min_sampler_trials trials proposed by its model before anything is pruned."""

from __future__ import annotations

import optuna
import pytest
from optuna.pruners import BasePruner
from optuna.trial import TrialState

from rnnsweep.search.fair_pruner import (
    SamplerTrialsFirst,
    guarantee_sampler_trials,
    sampler_trials_complete,
)


class PruneEverything(BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def run(pruner: BasePruner, n_trials: int = 8) -> list[TrialState]:
    sampler = optuna.samplers.TPESampler(n_startup_trials=4, seed=0)
    study = optuna.create_study(sampler=sampler, pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1, 1)
        for step in range(3):
            trial.report(x * x + 1 / (step + 1), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return x * x

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials)
    return [t.state for t in study.trials]


def test_a_pruner_that_prunes_everything_still_lets_two_sampler_trials_complete():
    bare = run(PruneEverything())
    assert bare.count(TrialState.COMPLETE) == 0  # unguarded: not one proposal evaluated
    states = run(SamplerTrialsFirst(PruneEverything(), n_startup_trials=4, min_complete=2))
    complete = [i for i, s in enumerate(states) if s == TrialState.COMPLETE]
    assert complete == [0, 1, 2, 3, 4, 5]  # the start-up, then two of the model's proposals
    assert states[6:] == [TrialState.PRUNED, TrialState.PRUNED]


def test_the_guarantee_never_asks_for_more_trials_than_are_left():
    assert isinstance(guarantee_sampler_trials(PruneEverything(), 8, 4, 2), SamplerTrialsFirst)
    inner = PruneEverything()
    assert guarantee_sampler_trials(inner, 3, 4, 2) is inner  # smoke: all trials start-up
    assert guarantee_sampler_trials(inner, 8, 4, 0) is inner
    capped = guarantee_sampler_trials(inner, 5, 4, 2)
    assert isinstance(capped, SamplerTrialsFirst) and capped.min_complete == 1


def test_only_complete_trials_past_the_start_up_count():
    study = optuna.create_study()
    for number, state in enumerate([TrialState.COMPLETE, TrialState.COMPLETE,
                                    TrialState.PRUNED, TrialState.COMPLETE]):
        study.add_trial(optuna.trial.create_trial(
            state=state, value=1.0 if state == TrialState.COMPLETE else None,
            intermediate_values={0: 1.0}))
        assert study.trials[-1].number == number
    assert sampler_trials_complete(study, n_startup_trials=2) == 1


def test_a_negative_count_is_refused(typed):
    from rnnsweep.errors import ConfigError

    with pytest.raises(ConfigError, match="search.min_sampler_trials"):
        typed("search.min_sampler_trials=-1")
