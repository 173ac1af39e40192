"""Every value that reaches a library is checked in the preflight: one line naming the key
and what is allowed, before any store, run or study exists (issue 12, items 4 and 6)."""

from __future__ import annotations

import pytest
from conftest import run_train


@pytest.fixture
def preflight(project, monkeypatch):
    """The preflight of train.py, in-process, on a fresh project copy."""
    from rnnsweep.preflight import preflight as run_preflight

    monkeypatch.setenv("RNNSWEEP_ROOT", str(project))

    def check(*argv: str) -> int:
        return run_preflight(project / "conf", [*argv, "experiment=smoke"])
    return check


def refused(preflight, project, *argv: str) -> str:
    from rnnsweep.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        preflight(*argv)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message, message
    assert not (project / "mlruns").exists() and not (project / "outputs").exists()
    return message


# -- item 6: values a library would reject inside a trial -------------------------------------
BAD = [
    # key, override, what the line must say is allowed
    ("search.metric", "search.metric=nonexistent", "the adding task logs val_loss, val_acc, "
     "val_mse"),
    ("search.metric", "search.metric=val_frame_acc", "logs val_loss, val_acc, val_mse"),
    ("search.metric", "search.metric=test_loss", "logs val_loss, val_acc, val_mse"),
    ("search.direction", "search.metric=val_acc", "must be maximized"),
    ("search.n_startup_trials", "search.n_startup_trials=-1", "must be an integer >= 0"),
    ("search.pruner_warmup_steps", "search.pruner_warmup_steps=-5", ">= 0"),
    ("search.seed", "search.seed=-3", "must be an integer in [0, 4294967295]"),
    ("search.seed", "search.seed=4294967296", "must be an integer in [0, 4294967295]"),
    ("seed", "seed=-1", "must be an integer in [0, "),
    ("seed", "seed=4294967295", "must be an integer in [0, "),
    ("data.seed", "data.seed=-1", "must be an integer >= 0"),
    ("trainer.precision", "trainer.precision=bogus", "allowed (Lightning): 16-true, 16-mixed"),
    ("trainer.precision", "trainer.precision=8", "bf16-mixed, 32-true, 64-true"),
    ("trainer.accelerator", "trainer.accelerator=quantum", "allowed: "),
    ("optim.weight_decay", "optim.weight_decay=-1", "must be >= 0"),
    ("optim.weight_decay", "optim.weight_decay=-1e-9", "must be >= 0"),
    ("trainer.num_threads", "trainer.num_threads=-1", "must be an integer >= 1, or null"),
    ("trainer.num_threads", "trainer.num_threads=0", "must be an integer >= 1, or null"),
    ("trainer.devices", "trainer.devices=0", "must be an integer >= 1"),
    ("trainer.memory_probe_batches", "trainer.memory_probe_batches=-1", ">= 0"),
    ("optim._target_", "optim._target_=torch.nn.Linear",
     "must be a subclass of torch.optim.optimizer.Optimizer"),
    ("model", "model=64", "model is a section of keys (num_layers, hidden_size, dropout, "
     "param_budget, keep_gate_bias, train_objective)"),
    ("search.space.lr", "search.space.lr=0.1", "section of keys (path, type, low, high"),
    ("search.space", "search.space=3", "named entries, each with keys (path, type"),
]


@pytest.mark.parametrize(("key", "override", "allowed"), BAD, ids=[b[1] for b in BAD])
def test_a_value_a_library_would_reject_is_refused_first(preflight, project, key, override,
                                                         allowed):
    message = refused(preflight, project, override)
    assert message.startswith(f"{key}=") or message.startswith(f"{key}:"), message
    assert allowed in message, message


@pytest.mark.parametrize("task", ["anbn", "adding"])
def test_the_metric_is_checked_against_what_the_task_logs(preflight, project, task):
    """anbn (multi-label) logs val_frame_acc; adding (regression) logs val_mse."""
    logged = {"anbn": "val_frame_acc", "adding": "val_mse"}[task]
    other = {"anbn": "val_mse", "adding": "val_frame_acc"}[task]
    direction = "maximize" if logged.endswith("_acc") else "minimize"
    assert preflight(f"data={task}", f"search.metric={logged}",
                     f"search.direction={direction}") == 1
    message = refused(preflight, project, f"data={task}", f"search.metric={other}")
    assert message.startswith(f"search.metric='{other}' is invalid: the {task} task logs")
    assert logged in message


@pytest.mark.parametrize("loss", ["mse", "bce", "ce"])
def test_the_metric_names_match_what_the_module_logs(loss):
    """search.metric's allowed names are exactly the validation values a real fit of the
    LightningModule logs for the task's loss kind (beside the training-side ones)."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader

    from rnnsweep.cost_step import example_batch
    from rnnsweep.data.spec import TaskSpec
    from rnnsweep.lit_module import RecurrentLitModule, validation_metrics
    from rnnsweep.model import SequenceModel

    spec = TaskSpec(input_size=2, output_size=3, loss=loss, per_step=loss == "bce")
    batch = example_batch(spec, 4, 5, torch.device("cpu"))
    loader = DataLoader([batch], batch_size=None)
    module = RecurrentLitModule(SequenceModel("gru", spec, hidden_size=4),
                                optimizer=torch.optim.Adam)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    logged = {k for k in trainer.callback_metrics if k.startswith("val_")}
    assert logged == set(validation_metrics(spec))
    assert len(validation_metrics(spec)) == (2 if loss == "ce" else 3)


@pytest.mark.parametrize(("argv", "key"), [
    (["search=none", "model.hidden_size=1000000000"], "model.hidden_size=1000000000 "),
    (["search=none", "model.hidden_size=200000", "model.num_layers=3"],
     "model.hidden_size=200000 "),
    (["search.space.hidden_size.high=1000000"], "search.space.hidden_size.high=1000000 "),
    (["search.match_params=true", "search.budget.high=100000000000000"],
     "search.space.param_budget.high=1"),
], ids=["single", "layers", "space-top", "budget"])
def test_a_model_larger_than_the_machine_is_refused(preflight, project, argv, key):
    message = refused(preflight, project, *argv)
    assert message.startswith(key) and "is invalid: " in message, message
    assert "more than this machine's" in message and "of memory" in message


def test_the_memory_estimate_counts_weights_state_and_activations():
    from rnnsweep.data.spec import TaskSpec
    from rnnsweep.limits import estimate_bytes
    from rnnsweep.model import total_parameters

    spec = TaskSpec(2, 1, "mse")
    params = total_parameters("lstm", spec, 128, 2)
    adam = estimate_bytes("lstm", spec, 128, 2, "adam", 64, 50)
    sgd = estimate_bytes("lstm", spec, 128, 2, "sgd", 64, 50)
    assert adam - sgd == 2 * params * 4  # Adam's two moments, float32
    assert sgd == (2 * params + 64 * 50 * 128 * 2 * (4 + 2)) * 4
    # Today's defaults fit a small machine with room to spare.
    assert estimate_bytes("lstm", spec, 256, 3, "adam", 64, 50) < 2**30


def test_settings_that_fit_pass(preflight):
    assert preflight("trainer.precision=bf16-mixed", "optim.weight_decay=0.01",
                     "trainer.num_threads=1", "search.n_startup_trials=0", "seed=7",
                     "data.seed=0", "trainer.precision=64-true") == 1
    assert preflight("search=none", "model.hidden_size=512") == 1


def test_a_bad_value_exits_2_in_one_line_from_the_command(project):
    """The exit-code contract, once end to end: the rest above are in-process."""
    proc = run_train(project, "experiment=smoke", "search=none", "model.hidden_size=1000000000")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: model.hidden_size=1000000000 is "
                                                   "invalid: "), proc.stderr
    assert not (project / "mlruns").exists() and not (project / "outputs").exists()


# -- item 4: keys read once per job cannot be searched per trial ------------------------------
PER_JOB = ["data.batch_size", "data.seq_len", "data.noise_sd", "seed", "trainer.num_threads",
           "search.n_trials", "tracking.experiment", "cell.name", "trainer.max_steps",
           "trainer.accelerator"]


@pytest.mark.parametrize("path", PER_JOB)
def test_a_key_read_once_per_job_is_refused_in_the_search_space(preflight, project, path):
    space = (f"+search.space.x={{path:{path},type:categorical,choices:[1,48]}}")
    message = refused(preflight, project, space)
    assert message.startswith(f"search.space.x.path='{path}' is invalid: {path} cannot be "
                              "searched per trial ("), message
    assert "a sampled value would be logged but not used" in message


@pytest.mark.parametrize("path", ["model.hidden_size", "optim.weight_decay", "cell.forget_bias",
                                  "trainer.gradient_clip_val", "model.dropout"])
def test_a_key_read_per_trial_may_be_searched(preflight, path):
    space = f"+search.space.x={{path:{path},type:categorical,choices:[0.1,0.2]}}"
    assert preflight(space) == 1


def test_a_section_cannot_be_searched(preflight, project):
    message = refused(preflight, project, "+search.space.x={path:model,type:int,low:1,high:3}")
    assert message.startswith("search.space.x.path='model' is invalid: must name a single "
                              "value")
