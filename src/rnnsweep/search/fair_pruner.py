"""A pruner that lets the sampler's own proposals finish before it prunes anything.

A median pruner whose start-up equals the sampler's can prune every model-based proposal of
a short study: in chung2014 the GRU study's 4 random start-up trials completed and every TPE
proposal after them was pruned, so its "tuned" learning rate was the best of 4 random draws
while the LSTM's study completed 6 trials. Wrapped in this class, the configured pruner
(`search.pruner`) is consulted only once the study holds `min_complete` complete trials
proposed by the sampler's model (trial number >= `n_startup_trials`), so every compared cell
gets at least that many, and the report counts them per study.

Written here because Optuna has no pruner condition on the count of complete trials of a
kind (`PatientPruner` and `n_startup_trials` count any finished trial).
"""

from __future__ import annotations

import optuna
from optuna.pruners import BasePruner
from optuna.trial import TrialState


def sampler_trials_complete(study: optuna.Study, n_startup_trials: int) -> int:
    """Complete trials proposed by the sampler's model, not by its random start-up."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
               if t.number >= n_startup_trials)


class SamplerTrialsFirst(BasePruner):
    """`pruner`, held back until `min_complete` sampler-proposed trials are complete."""

    def __init__(self, pruner: BasePruner, n_startup_trials: int, min_complete: int) -> None:
        self.pruner = pruner
        self.n_startup_trials, self.min_complete = n_startup_trials, min_complete

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if sampler_trials_complete(study, self.n_startup_trials) < self.min_complete:
            return False
        return self.pruner.prune(study, trial)


def guarantee_sampler_trials(pruner: BasePruner, n_trials: int, n_startup_trials: int,
                             min_sampler_trials: int) -> BasePruner:
    """`pruner` held back for `min_sampler_trials` complete sampler trials, at most as many
    as the trials left after the start-up; unchanged when none are asked for."""
    need = min(min_sampler_trials, max(0, n_trials - n_startup_trials))
    if need == 0:
        return pruner
    return SamplerTrialsFirst(pruner, n_startup_trials, need)
