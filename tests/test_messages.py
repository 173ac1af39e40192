"""Messages that lead somewhere (issue 22, item 7): a key of another option names the option
to pick, a misspelt group value the closest one, and a single run's progress counts steps."""

from __future__ import annotations

import pytest
from conftest import ROOT, make_project_copy, run_train

from rnnsweep.errors import ConfigError
from rnnsweep.preflight import preflight

CELLS = ", ".join(sorted(p.stem for p in (ROOT / "conf" / "cell").glob("*.yaml")))


@pytest.fixture
def copy(tmp_path):
    return make_project_copy(tmp_path / "project")


def refused(project, monkeypatch, argv: list[str]) -> str:
    monkeypatch.setenv("RNNSWEEP_ROOT", str(project))
    with pytest.raises(ConfigError) as err:
        preflight(project / "conf", [*argv, "experiment=smoke"])
    message = str(err.value)
    assert "\n" not in message, message
    assert not (project / "mlruns").exists() and not (project / "outputs").exists()
    return message


@pytest.mark.parametrize(("argv", "hint"), [
    (["data.path=digits.npz"], "; data.path belongs to data=file: add data=file to the command"),
    (["-m", "cell=lstm,gru", "data.path=digits.npz"], "add data=file to the command"),
    (["data=anbn", "data.path=digits.npz"], "use data=file instead of data=anbn"),
    (["data.val_fraction=0.2"],
     "data.val_fraction belongs to data=chorales or data=file: add one of them to the command"),
])
def test_a_key_of_another_option_names_the_option(copy, monkeypatch, argv, hint):
    message = refused(copy, monkeypatch, argv)
    assert "no such key in data (allowed: " in message and message.endswith(hint), message


def test_a_plain_typo_still_gets_the_closest_key(copy, monkeypatch):
    message = refused(copy, monkeypatch, ["data.n_trian_small=10"])
    assert message.endswith("did you mean data.n_train_small?"), message


@pytest.mark.parametrize(("argv", "expected"), [
    (["-m", "cell=lstm,gur"], f"cell=gur is invalid: allowed: {CELLS}; did you mean cell=gru?"),
    (["cell=lstn"], f"cell=lstn is invalid: allowed: {CELLS}; did you mean cell=lstm?"),
    (["data=fil"], "data=fil is invalid: allowed: adding, anbn, chorales, file; "
                   "did you mean data=file?"),
    (["cell=transformer"], f"cell=transformer is invalid: allowed: {CELLS}"),
])
def test_a_misspelt_option_gets_the_closest(copy, monkeypatch, argv, expected):
    assert refused(copy, monkeypatch, argv) == expected


def test_data_path_without_data_file_is_refused_in_one_line(copy):
    proc = run_train(copy, "-m", "cell=lstm,gru", "data.path=digits.npz", "experiment=smoke")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: data.path=digits.npz: no such key")
    assert lines[0].endswith("add data=file to the command"), lines[0]
    assert not (copy / "mlruns").exists() and not (copy / "outputs").exists()


# -- a single run's progress bar ---------------------------------------------------------------
def test_a_single_run_shows_its_steps_not_epoch_minus_two(typed, capsys):
    from rnnsweep.data import build_datamodule
    from rnnsweep.job import train_setup
    from rnnsweep.training import StepProgressBar, progress_callbacks, train_model

    cfg = typed("search=none", "data.size=small", "trainer.max_steps=20")
    assert [type(c) for c in progress_callbacks(train_setup(cfg))] == [StepProgressBar]
    train_model(train_setup(cfg), build_datamodule(cfg.data), seed=1)
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert "Steps" in text and "20/20" in text, text[-2000:]
    assert "Epoch" not in text and "/-2" not in text
    # Trials show no batch bar (the study's own progress line instead); an epoch budget
    # keeps Lightning's epoch bar, whose epochs are then the unit.
    assert progress_callbacks(train_setup(typed("search=tpe"))) == []
    epochs = typed("search=none", "trainer.budget_unit=epochs")
    assert progress_callbacks(train_setup(epochs)) == []
