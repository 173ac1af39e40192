"""Config builds the objects (issue 13, item 1): every sampler, pruner, optimiser, schedule,
cell and Trainer option comes from a `_target_` node through Hydra, any class can be named
without a code change, and the preflight refuses a bad one with one line."""

from __future__ import annotations

import lightning.pytorch as pl
import optuna
import pytest
import torch
from conftest import ROOT, run_train
from store_checks import all_runs, check_no_loss, mlflow_url, optuna_url, trials_by_study

from rnnsweep.errors import ConfigError
from rnnsweep.search.fair_pruner import SamplerTrialsFirst
from rnnsweep.search.study import make_pruner, make_sampler, sampler_label
from rnnsweep.targets import build

SAMPLERS = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler,
            "cmaes": optuna.samplers.CmaEsSampler, "qmc": optuna.samplers.QMCSampler,
            "random": optuna.samplers.RandomSampler}
PRUNERS = {"median": optuna.pruners.MedianPruner,
           "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
           "hyperband": optuna.pruners.HyperbandPruner, "none": optuna.pruners.NopPruner}


def test_the_groups_list_exactly_these_options():
    found = {g: sorted(p.stem for p in (ROOT / "conf" / "search" / g).glob("*.yaml"))
             for g in ("sampler", "pruner")}
    assert found == {"sampler": sorted(SAMPLERS), "pruner": sorted(PRUNERS)}


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("pruner", list(PRUNERS))
def test_every_sampler_and_pruner_builds_and_runs_a_study(typed, sampler, pruner):
    cfg = typed(f"search/sampler={sampler}", f"search/pruner={pruner}")
    built_sampler, built_pruner = make_sampler(cfg.search), make_pruner(cfg.search)
    assert type(built_sampler) is SAMPLERS[sampler]
    # The configured pruner, held back until search.min_sampler_trials proposals complete.
    s = cfg.search
    assert isinstance(built_pruner, SamplerTrialsFirst)
    assert built_pruner.min_complete == min(s.min_sampler_trials, s.n_trials - s.n_startup_trials)
    assert type(built_pruner.pruner) is PRUNERS[pruner]
    assert sampler_label(cfg.search) == sampler
    study = optuna.create_study(sampler=built_sampler, pruner=built_pruner)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -3, 3)
        for step in range(1, 4):  # steps as the trainer reports them
            trial.report((x - 1) ** 2 + 1 / step, step=step * cfg.trainer.val_check_steps)
            if trial.should_prune():
                raise optuna.TrialPruned
        return (x - 1) ** 2

    study.optimize(objective, n_trials=6)
    states = [t.state for t in study.trials]
    assert len(states) == 6 and all(s in (optuna.trial.TrialState.COMPLETE,
                                          optuna.trial.TrialState.PRUNED) for s in states)


def test_sampler_and_pruner_settings_come_from_the_search_keys(typed):
    cfg = typed("search/pruner=hyperband", "search.pruner_warmup_steps=20",
                "search.seed=7")
    pruner = make_pruner(cfg.search).pruner
    assert pruner._min_resource == 20 and pruner._max_resource == cfg.trainer.max_steps
    a = make_sampler(cfg.search).sample_independent(
        optuna.create_study(), optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING),
        "x", optuna.distributions.FloatDistribution(0, 1))
    b = make_sampler(cfg.search).sample_independent(
        optuna.create_study(), optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING),
        "x", optuna.distributions.FloatDistribution(0, 1))
    assert a == b  # seeded from search.seed


def test_any_optuna_class_can_be_named_on_the_command_line(typed):
    cfg = typed("search.sampler._target_=optuna.samplers.NSGAIISampler",
                "~search.sampler.n_startup_trials",
                "search.pruner._target_=optuna.pruners.PercentilePruner",
                "~search.pruner.n_startup_trials", "~search.pruner.n_warmup_steps",
                "+search.pruner.percentile=25.0")
    assert type(make_sampler(cfg.search)) is optuna.samplers.NSGAIISampler
    pruner = make_pruner(cfg.search).pruner
    assert type(pruner) is optuna.pruners.PercentilePruner and pruner._percentile == 25.0
    assert sampler_label(cfg.search) == "nsgaii"


def test_a_trainer_argument_passes_through_without_code(typed):
    from rnnsweep.schema import TRAINER_OWN_KEYS

    cfg = typed("+trainer.accumulate_grad_batches=3", "trainer.gradient_clip_val=0.5")
    trainer = build(cfg.trainer, skip=TRAINER_OWN_KEYS, logger=False,
                    enable_progress_bar=False, enable_checkpointing=False)
    assert isinstance(trainer, pl.Trainer) and trainer.accumulate_grad_batches == 3
    assert trainer.gradient_clip_val == 0.5


def test_optimiser_and_schedule_are_built_from_their_groups(typed):
    from rnnsweep.data import build_datamodule
    from rnnsweep.job import train_setup
    from rnnsweep.training import build_module

    cfg = typed("optim=sgd", "scheduler=cosine", "optim.lr=0.05", "+optim.nesterov=true",
                "optim.momentum=0.9")
    module = build_module(train_setup(cfg).nodes, build_datamodule(cfg.data))
    out = module.configure_optimizers()
    opt, sched = out["optimizer"], out["lr_scheduler"]
    assert type(opt) is torch.optim.SGD and opt.defaults["lr"] == 0.05
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    assert type(sched["scheduler"]) is torch.optim.lr_scheduler.CosineAnnealingLR
    assert sched["interval"] == "step" and sched["scheduler"].T_max == cfg.trainer.max_steps
    plain = build_module(train_setup(typed()).nodes,
                         build_datamodule(cfg.data)).configure_optimizers()
    assert type(plain) is torch.optim.Adam


@pytest.mark.parametrize(("overrides", "message"), [
    (["+search.sampler.n_startup_trails=3"],
     "search.sampler.n_startup_trails is invalid for optuna.samplers.TPESampler: allowed: "),
    (["+search.sampler.n_startup_trails=3"], "did you mean search.sampler.n_startup_trials?"),
    (["search.sampler._target_=optuna.samplers.NoSuchSampler"],
     "search.sampler._target_=optuna.samplers.NoSuchSampler is invalid: cannot import it"),
    (["search.pruner._target_=optuna.samplers.RandomSampler", "~search.pruner.n_startup_trials",
      "~search.pruner.n_warmup_steps"],
     "must be a subclass of optuna.pruners._base.BasePruner"),
    (["optim._target_=torch.nn.Linear"], "must be a subclass of torch.optim.optimizer.Optimizer"),
    (["+trainer.val_check_interval=3"],
     "trainer.val_check_interval is invalid: rnnsweep sets val_check_interval itself"),
    (["+trainer.max_stepz=3"], "trainer.max_stepz is invalid for lightning.pytorch.Trainer"),
    (["cell=gru", "+cell.forget_bias=1.0"],
     "cell.forget_bias is invalid for rnnsweep.cells.GRU: allowed: update_bias"),
    (["cell._target_=rnnsweep.cells.mingru.MinGRU"],
     "cell.name=lstm is invalid with cell._target_=rnnsweep.cells.mingru.MinGRU"),
    (["scheduler=cosine", "+scheduler.T_maxx=3"], "scheduler.T_maxx is invalid for torch.optim"),
])
def test_a_bad_class_or_key_is_refused_with_one_line(typed, overrides, message):
    with pytest.raises(ConfigError) as err:
        typed(*overrides)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_a_cell_of_ones_own_by_target_runs_with_its_own_name(typed):
    from rnnsweep.data import build_datamodule
    from rnnsweep.job import train_setup
    from rnnsweep.training import build_module, run_params

    cfg = typed("cell.name=mycell", "cell._target_=rnnsweep.cells.mingru.MinGRU",
                "~cell.forget_bias", "search.match_params=true", "model.param_budget=900")
    dm = build_datamodule(cfg.data)
    net = build_module(train_setup(cfg).nodes, dm).net
    assert net.cell == "mycell" and type(net.rnn).__name__ == "MinGRU"
    assert abs(sum(p.numel() for p in net.parameters()) - 900) / 900 < 0.1
    assert run_params(train_setup(cfg), dm)["init"].startswith("pytorch-default")


def test_mingru_sweep_with_gp_and_hyperband_beside_lstm(project):
    """The issue's command, smoke-sized: two cells, one data size, GP + Hyperband."""
    proc = run_train(project, "-m", "cell=lstm,mingru", "experiment=smoke", "data.size=small",
                     "search/sampler=gp", "search/pruner=hyperband", "search.reeval_seeds=0",
                     "search.reeval_max_seeds=0", timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    studies = trials_by_study(optuna_url(project))
    assert sorted(studies) == ["adding-small-lstm-T20-n48-seed1234",
                               "adding-small-mingru-T20-n48-seed1234"]
    check_no_loss(optuna_url(project), mlflow_url(project), n_trials=3, n_studies=2)
    parents = [r for r in all_runs(mlflow_url(project)) if r.data.tags.get("role") == "study"]
    assert {p.data.tags["search_sampler"] for p in parents} == {"gp"}
    assert {p.data.tags["cell"] for p in parents} == {"lstm", "mingru"}
    summary = proc.stdout[proc.stdout.index("Sweep summary"):]
    assert sum(" mingru " in line for line in summary.splitlines()) == 1


def test_the_default_profile_searches_with_gp_and_hyperband_and_the_command_line_wins():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            default = compose("config")
            chosen = {o: compose("config", overrides=[o]).search
                      for o in ("search=random", "search=tpe", "experiment=smoke")}
    finally:
        GlobalHydra.instance().clear()
    assert default.search.name == "gp_hyperband"
    assert default.search.sampler._target_ == "optuna.samplers.GPSampler"
    assert default.search.pruner._target_ == "optuna.pruners.HyperbandPruner"
    assert chosen["search=random"].sampler._target_ == "optuna.samplers.RandomSampler"
    assert chosen["search=random"].pruner._target_ == "optuna.pruners.NopPruner"
    for other in ("search=tpe", "experiment=smoke"):
        assert chosen[other].sampler._target_ == "optuna.samplers.TPESampler"
        assert chosen[other].pruner._target_ == "optuna.pruners.MedianPruner"


def test_warm_start_keys_are_typed_and_checked(typed):
    assert typed("search.warm_start_from=small").search.warm_start_from == "small"
    with pytest.raises(ConfigError, match="search.warm_start_top_k=0 is invalid: must be"):
        typed("search.warm_start_top_k=0")
