"""What the user reads: a clean sweep console, the progress line, the summary, --help."""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from pathlib import Path

import optuna
import pytest
from conftest import NOISE, ROOT, new_mlflow_store, run_train
from omegaconf import OmegaConf
from rich.console import Console

from rnnsweep.console import (
    LightningInfoFilter,
    StudyProgress,
    announce_reevaluation,
    quiet_third_party,
)
from rnnsweep.job import train_setup
from rnnsweep.sweep_callbacks import StudyRow, condition_labels, print_summary, read_sweep
from rnnsweep.threads import available_cores


def test_smoke_sweep_console_is_clean(smoke_sweep: Path) -> None:
    out = (smoke_sweep / "sweep.stdout").read_text()
    err = (smoke_sweep / "sweep.stderr").read_text()
    for text in NOISE:
        assert text not in out + err, text
    # Once per process: the joblib launcher's workers (one per core) each say it once.
    assert (out + err).count("GPU available") <= max(1, available_cores())
    # One progress line per study ends at n of n trials, then the summary and next steps.
    for size, cell in [("small", "lstm"), ("small", "gru"), ("large", "lstm"), ("large", "gru")]:
        assert re.search(rf"adding-{size}-{cell}-\S+\s+3/3 trials · \d pruned · \d failed", out)
    table = out[out.index("Sweep summary"):]
    # One row per study; the star on exactly the rows whose best val_loss is the lowest of
    # their data size, as MLflow records them.
    shown = {(size, cell): (float(value), bool(star)) for size, cell, value, star in re.findall(
        r"^\s*adding\s+(small|large)\s+(lstm|gru)\s+([-+.\de]+)( \*)?\s", table, re.M)}
    assert len(shown) == 4, table
    best = {(r.data_size, r.cell): r.best_value for r in smoke_rows(smoke_sweep)}
    for (size, cell), (value, star) in shown.items():
        assert value == pytest.approx(best[size, cell], rel=1e-3)
        lowest = min(v for (s, _), v in best.items() if s == size)
        assert star == (best[size, cell] == lowest), (size, cell, table)
    assert sum(star for _, star in shown.values()) == 2  # one winner per data size (no tie)
    assert "make ui" in table and "reports/adding/report.md" in table


def smoke_rows(project: Path) -> list[StudyRow]:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    experiment = MlflowClient(uri).get_experiment_by_name("adding").experiment_id
    run = MlflowClient(uri).search_runs([experiment], "tags.role = 'study'")[0]
    return read_sweep(uri, run.data.tags["sweep_id"], "val_loss")


def test_summary_is_read_back_from_mlflow(smoke_sweep: Path) -> None:
    rows = smoke_rows(smoke_sweep)
    assert [(r.data_size, r.cell) for r in rows] == [
        ("small", "gru"), ("small", "lstm"), ("large", "gru"), ("large", "lstm")]
    storage = f"sqlite:///{smoke_sweep / 'mlruns' / 'optuna.db'}"
    for r in rows:  # the numbers of the study itself
        study = optuna.load_study(study_name=r.study_name, storage=storage)
        states = [t.state.name for t in study.trials]
        assert (r.n_complete, r.n_pruned) == (states.count("COMPLETE"), states.count("PRUNED"))
        assert r.n_complete + r.n_pruned == 3
        assert r.best_value == pytest.approx(study.best_value)
        assert r.best_params == {k: str(v) for k, v in study.best_params.items()}
    uri = f"sqlite:///{smoke_sweep / 'mlruns' / 'mlflow.db'}"
    assert read_sweep(uri, "no-such-sweep", "val_loss") == []


def test_summary_marks_the_best_cell_per_data_size() -> None:
    rows = [StudyRow("adding", "small", "lstm", "s-l", "FINISHED", 0.5, {"lr": "0.001"}, 2, 1),
            StudyRow("adding", "small", "gru", "s-g", "FINISHED", 0.4, {"lr": "0.01"}, 3, 0),
            StudyRow("adding", "large", "gru", "l-g", "FAILED", None, {}, 0, 0, 4)]
    buffer = io.StringIO()
    print_summary(rows, "val_loss", "minimize", Console(file=buffer, width=160))
    text = buffer.getvalue()
    assert "0.4 *" in text and "0.5 *" not in text
    assert "[FAILED]" in text and "reports/adding/report.md" in text


def test_a_sweep_over_a_condition_shows_it_and_marks_a_best_per_condition() -> None:
    """make evidence sweeps data.seq_len: rows of T=10 and T=40 must read apart, and the
    star compares cells at one length, not across lengths."""
    def row(size: str, cell: str, t: str, best: float) -> StudyRow:
        n = "200" if size == "small" else "4000"
        return StudyRow("adding", size, cell, f"{size}-{cell}-{t}", "FINISHED", best,
                        condition={"T": t, "n": n, "noise": "0.3", "seed": "1234"})

    rows = [row("small", "gru", "10", 0.10), row("small", "lstm", "10", 0.12),
            row("small", "gru", "40", 0.25), row("small", "lstm", "40", 0.20),
            row("large", "gru", "10", 0.09), row("large", "lstm", "10", 0.08)]
    # n differs between sizes only, so it is no column; T varies within a size
    assert condition_labels(rows) == ["T=10", "T=10", "T=40", "T=40", "T=10", "T=10"]
    buffer = io.StringIO()
    print_summary(rows, "val_loss", "minimize", Console(file=buffer, width=200))
    shown = re.findall(r"^\s*adding\s+(small|large) T=(\d+)\s+(lstm|gru)\s+([.\d]+)( \*)?",
                       buffer.getvalue(), re.M)
    stars = {(size, t, cell) for size, t, cell, _, star in shown if star}
    assert len(shown) == 6
    assert stars == {("small", "10", "gru"), ("small", "40", "lstm"), ("large", "10", "lstm")}
    # one condition throughout: the table reads as before, no condition in the data column
    assert condition_labels(rows[:2]) == ["", ""]


def test_summary_shows_the_trivial_loss_and_accuracy_beside_the_majority_rate() -> None:
    common = dict(status="FINISHED", best_params={}, n_complete=3)
    regression = [StudyRow("adding", "small", "lstm", "a", best_value=0.1, trivial_loss=0.2793,
                           loss_kind="mse", reeval_test=0.123, reeval_n=5, **common)]
    buffer = io.StringIO()
    print_summary(regression, "val_loss", "minimize", Console(file=buffer, width=200))
    assert "trivial loss" in buffer.getvalue() and "0.2793" in buffer.getvalue()
    assert "majority" not in buffer.getvalue()
    assert "test loss, re-eval" in buffer.getvalue() and "0.123 (n=5)" in buffer.getvalue()
    classes = [StudyRow("file", "large", "gru", "f", best_value=0.69, trivial_loss=0.6931,
                        loss_kind="ce", reeval_test=0.512, reeval_n=3, majority_acc=0.5,
                        **common),
               StudyRow("file", "large", "lstm", "g", best_value=0.31, trivial_loss=0.6931,
                        loss_kind="ce", reeval_test=0.91, reeval_n=3, majority_acc=0.5,
                        **common)]
    buffer = io.StringIO()
    print_summary(classes, "val_loss", "minimize", Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "test acc, re-eval (majority)" in text
    assert "0.512 (0.5, n=3)" in text and "0.91 (0.5, n=3)" in text
    # One headline everywhere: the table says which number it is.
    assert "mean over the re-evaluation seeds" in " ".join(text.split())


def test_the_search_time_column_is_the_studys_search_not_its_runs_lifetime(tmp_path) -> None:
    """The parent run stays open while its re-evaluation seeds run at the end of a sweep;
    the table reads the search's own seconds (metric search_seconds) instead."""
    from mlflow.tracking import MlflowClient

    uri = new_mlflow_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp = client.create_experiment("e")
    run = client.create_run(exp, tags={"sweep_id": "s1", "role": "study", "cell": "lstm",
                                       "task": "adding", "data_size": "small"})
    client.log_metric(run.info.run_id, "search_seconds", 16.0)
    client.set_terminated(run.info.run_id, end_time=run.info.start_time + 162_000)
    rows = read_sweep(uri, "s1", "val_loss")
    assert rows[0].wall_seconds == 16.0


def test_progress_line_counts_trials_pruned_failed_and_best() -> None:
    study = optuna.create_study(study_name="demo-small-lstm", direction="minimize")
    buffer = io.StringIO()
    progress = StudyProgress(study, 3, "val_loss", Console(file=buffer, width=200), live=False)

    def objective(trial: optuna.Trial) -> float:
        if trial.number == 1:
            raise optuna.TrialPruned()
        if trial.number == 2:
            raise ValueError("boom")
        return 0.25 + trial.number

    with progress:
        study.optimize(objective, n_trials=4, callbacks=[progress], catch=(ValueError,))
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("demo-small-lstm  1/3 trials · 0 pruned · 0 failed")
    assert "best val_loss 0.25" in lines[0]
    assert "2/3 trials · 1 pruned · 1 failed" in lines[2]
    assert "3/3 trials" in lines[3] and "ETA 0:00:00" in lines[3]


def test_live_progress_draws_the_final_state() -> None:
    study = optuna.create_study(study_name="demo-large-gru")
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=True)
    with StudyProgress(study, 2, "val_loss", console, live=True) as progress:
        study.optimize(lambda t: 1.5, n_trials=2, callbacks=[progress])
    assert "2/2 trials · 0 pruned · 0 failed · best val_loss 1.5" in buffer.getvalue()


def test_filters_are_precise_real_warnings_still_show() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party(in_study=True)
        warnings.warn("RetryHeartbeatStaleTrialCallback is experimental (supported from v2.8.0).",
                      optuna.exceptions.ExperimentalWarning, stacklevel=1)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning,
                      stacklevel=1)
        warnings.warn("SomeNewFeature is experimental", optuna.exceptions.ExperimentalWarning,
                      stacklevel=1)
        warnings.warn("dropout has no effect with num_layers=1", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [
        "SomeNewFeature is experimental", "dropout has no effect with num_layers=1"]
    assert logging.getLogger("mlflow.store.db.utils").getEffectiveLevel() == logging.WARNING


def test_lightning_tips_dropped_device_line_once() -> None:
    filt = LightningInfoFilter()

    def passes(message: str) -> bool:
        return filt.filter(logging.LogRecord("x", logging.INFO, "", 0, message, None, None))

    assert not passes("💡 Tip: For seamless cloud logging ...")
    assert passes("GPU available: False, used: False")
    assert not passes("GPU available: False, used: False")
    assert passes("`Trainer.fit` stopped: `max_epochs=3` reached.")  # a single run keeps it
    filt.in_study = True
    assert not passes("`Trainer.fit` stopped: `max_epochs=3` reached.")
    assert passes("Something Lightning wants you to know")


@pytest.mark.parametrize(("search", "setting", "shown"), [
    ("none", None, True), ("tpe", None, False), ("tpe", True, True), ("none", False, False)])
def test_batch_bar_only_for_single_runs(search: str, setting: bool | None, shown: bool) -> None:
    cfg = OmegaConf.create({"search": {"name": search, "study": search != "none",
                                       "metric": "val_loss", "direction": "minimize"},
                            "trainer": {"progress_bar": setting, "num_threads": 1},
                            "cell": {}, "model": {}, "optim": {}})
    assert train_setup(cfg).progress_bar is shown


def help_groups(text: str) -> dict[str, list[str]]:
    """The `Config groups` section of --help: group -> its options in the order shown."""
    section = text[text.index("Config groups"):text.index("Keys changed most")]
    groups: dict[str, list[str]] = {}
    for line in section.splitlines()[1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        head = re.split(r"\s{2,}", line.strip())[0]
        if indent == 2:
            groups[head] = []
        else:
            assert indent > 2 and groups, line
            groups[list(groups)[-1]] += head.split()
    return groups


def conf_groups() -> dict[str, tuple[list[str], str | None]]:
    """Every config group of conf/ (nested ones as search/sampler) -> its options and its
    default in conf/config.yaml's defaults list (None: none, or chosen by interpolation)."""
    import yaml

    defaults: dict[str, str | None] = {}
    for entry in yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            (key, value), = entry.items()
            defaults[key.removeprefix("optional ")] = value
    groups = {}
    for folder in sorted(p for p in (ROOT / "conf").rglob("*") if p.is_dir()):
        name = folder.relative_to(ROOT / "conf").as_posix()
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if name.split("/")[0] == "hydra" or not options:
            continue
        groups[name] = (options, defaults.get(name) if defaults.get(name) in options else None)
    return groups


def test_help_lists_every_group_and_option(project: Path) -> None:
    proc = run_train(project, "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("rnnsweep: ") and "Usage: python train.py" in text
    assert "Typical commands" in text and "python train.py -m cell=lstm,gru" in text
    shown, expected = help_groups(text), conf_groups()
    assert sorted(shown) == sorted(expected), "groups in --help differ from conf/"
    for group, (options, default) in expected.items():
        assert sorted(shown[group]) == options, f"{group}: options differ from conf/"
        assert len(shown[group]) == len(options), f"{group}: an option listed twice"
        if default is not None:
            assert shown[group][0] == default, f"{group}: the default is not listed first"


def test_every_option_file_carries_its_help_line() -> None:
    """--help reads each option's description from its own file (rnnsweep.help_text)."""
    from rnnsweep.help_text import option_help

    for group, (options, _) in conf_groups().items():
        if group == "data_profile":  # listed by name only
            continue
        for name in options:
            assert option_help(ROOT / "conf" / group / f"{name}.yaml"), f"{group}/{name}"


def test_a_new_option_file_is_in_help_without_editing_anything_else(project: Path) -> None:
    """A cell of one's own is its YAML file (and its module): --help lists it with its help
    line, the group's default still first."""
    (project / "conf" / "cell" / "mycell.yaml").write_text(
        "# help: my own cell, for the test\nname: mycell\n_target_: torch.nn.GRU\n")
    proc = run_train(project, "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "mycell      my own cell, for the test" in proc.stdout
    assert help_groups(proc.stdout)["cell"][0] == "lstm"


def test_reevaluation_is_announced_only_when_it_will_run() -> None:
    study = optuna.create_study(study_name="demo-small-gru")
    search = OmegaConf.create({"reeval_seeds": 3})
    buffer = io.StringIO()
    announce_reevaluation(study, search, Console(file=buffer, width=200))
    assert buffer.getvalue() == ""  # nothing completed yet: nothing to re-train
    study.optimize(lambda t: 1.0, n_trials=1)
    announce_reevaluation(study, search, Console(file=buffer, width=200))
    assert "demo-small-gru  re-training the best configuration with 3 fresh seeds" in (
        buffer.getvalue())
    search.reeval_seeds = 0
    before = buffer.getvalue()
    announce_reevaluation(study, search, Console(file=buffer, width=200))
    assert buffer.getvalue() == before


# Lightning 2.6's logger connector, word for word, on every Trainer without a LitLogger.
LITLOGGER_TIP = (
    "💡 Tip: For seamless cloud logging and experiment tracking, try installing "
    "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger, which logs metrics "
    "and artifacts automatically to the Lightning Experiments platform.")


def test_litlogger_tip_dropped_after_mlflow_pytorch_takes_over_lightnings_logger() -> None:
    """mlflow.pytorch imports the standalone pytorch_lightning package, which re-points
    rank_zero_info to the logger `pytorch_lightning.utilities.rank_zero`."""
    import lightning.pytorch  # noqa: F401
    import mlflow.pytorch  # noqa: F401
    from lightning.pytorch.utilities.rank_zero import rank_zero_info
    from lightning_utilities.core import rank_zero as rank_zero_module

    quiet_third_party(in_study=False)
    logger = rank_zero_module.log
    assert logger.name == "pytorch_lightning.utilities.rank_zero"  # what the sweep met
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        rank_zero_info(LITLOGGER_TIP)
        rank_zero_info("Something Lightning wants you to know")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert seen == ["Something Lightning wants you to know"]


def test_report_and_sweep_draw_no_mlflow_download_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.utils.file_utils import ArtifactProgressBar

    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    with ArtifactProgressBar.files("Downloading artifacts", total=2) as bar:
        assert bar.pbar is not None  # MLflow's default: a tqdm bar per download
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    quiet_third_party(in_study=False)
    with ArtifactProgressBar.files("Downloading artifacts", total=2) as bar:
        assert bar.pbar is None


def test_report_entry_point_installs_the_filters(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    from rnnsweep.report import __main__ as report_main

    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "")  # restored afterwards
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    monkeypatch.setenv("RNNSWEEP_ROOT", str(tmp_path))  # no conf/ here: refused at once
    assert report_main.main([]) == 2
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
