"""Bad input: a one-line error naming the key, exit 2, and nothing created."""

from __future__ import annotations

import pytest
from conftest import ROOT, make_project_copy, run_train

# The options of conf/cell, as the refusals list them.
CELLS = ", ".join(sorted(p.stem for p in (ROOT / "conf" / "cell").glob("*.yaml")))

CASES = [
    (["cell=transformer"], "cell=transformer"),
    (["model.dropout=1.5"], "model.dropout"),
    (["model.hidden_size=0"], "model.hidden_size"),
    (["search.n_trials=-1"], "search.n_trials"),
    (["search.space.lr.low=0.1", "search.space.lr.high=0.01"], "search.space.lr.low"),
    (["model.hiden_size=8"], "hiden_size"),
    (["trainer.max_epochs=many"], "trainer.max_epochs"),
    (["trainer.stop_at=nan"], "trainer.stop_at"),
    (["report.equivalence_ratio=0.8"], "report.equivalence_ratio"),
    (["report.margin_kind=relative"], "report.margin_kind"),
]


@pytest.fixture
def copy(tmp_path):
    """A project copy for in-process checks (the `project` fixture marks a test e2e)."""
    return make_project_copy(tmp_path / "project")


def refused(project, monkeypatch, argv: list[str]) -> str:
    """The preflight's one-line refusal of a command line, in-process (train.py runs the
    preflight first and prints it as `error: ...`, exit 2: one subprocess case below)."""
    from rnnsweep.errors import ConfigError
    from rnnsweep.preflight import preflight

    monkeypatch.setenv("RNNSWEEP_ROOT", str(project))
    with pytest.raises(ConfigError) as err:
        preflight(project / "conf", argv)
    message = str(err.value)
    assert "\n" not in message, message
    assert not (project / "mlruns").exists() and not (project / "outputs").exists()
    return message


@pytest.mark.parametrize(("args", "key"), CASES, ids=[c[1] for c in CASES])
def test_bad_value_fails_before_anything_is_created(copy, monkeypatch, args, key):
    assert key in refused(copy, monkeypatch, [*args, "experiment=smoke"])


def test_bad_value_in_a_later_sweep_job_stops_the_whole_sweep_first(copy, monkeypatch):
    message = refused(copy, monkeypatch, ["-m", "cell=lstm,transformer", "experiment=smoke"])
    assert "cell=transformer" in message and f"allowed: {CELLS}" in message


# -- config groups: an empty or misspelt group or key lists what is allowed ------------------
@pytest.mark.parametrize(("argv", "expected"), [
    (["cell="], f"cell= is empty: allowed: {CELLS}"),
    (["-m", "cell="], f"cell= is empty: allowed: {CELLS}"),
    (["data= "], "data= is empty: allowed: adding, anbn, chorales, file"),
    (["cell=lstn"], f"cell=lstn is invalid: allowed: {CELLS}"),
    (["-m", "cell=lstm,lstn"], f"cell=lstn is invalid: allowed: {CELLS}"),
    (["cel=lstm"], "did you mean cell?"),
    (["-m", "cel=lstm,gru"], "did you mean cell?"),
    (["sell=gru"], "did you mean cell?"),
    (["model.hiden_size=8"], "did you mean model.hidden_size?"),
    (["optim.lr_rate=0.1"], "did you mean optim.lr?"),
    (["-m", "cell=lstm,"], "cell=lstm,: not a valid override"),
    # learning-curve sizes (rnnsweep.data.sizes)
    (["-m", "data.size=0.5,0.1"], "list curve sizes in increasing order, e.g. data.size=0.1,0.5"),
    (["-m", "data.size=0.1,0.1"], "a size is listed twice"),
    (["-m", "data.size=1,1.0"], "a size is listed twice"),
    (["data.size=9000"], "more than the"),
    (["data.size=big"], "allowed: small, large, a fraction in (0, 1]"),
    (["data=anbn", "data.size=0.5"], "no learning-curve sizes"),
])
def test_group_and_key_mistakes_name_the_allowed_values(copy, monkeypatch, argv, expected):
    message = refused(copy, monkeypatch, [*argv, "experiment=smoke"])
    assert expected in message, message
    if "did you mean" in expected:
        assert "allowed: " in message  # the keys that exist there


def test_empty_cell_in_a_sweep_fails_in_one_line_from_the_command(project):
    """The exit-code contract of a refused command, as a user meets it: exit 2, one line."""
    proc = run_train(project, "-m", "cell=", "experiment=smoke")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: cell= is empty: allowed: {CELLS}"], proc.stderr
    assert not (project / "mlruns").exists() and not (project / "outputs").exists()


# -- values inside MLflow filter strings (a data file named it's.npz) -------------------------
NAMES = ["plain-name", "it's", 'say "hi"', "back\\slash", "ends\\", "it's\\", "100%_done",
         "both ' and \"", 'q"\\']


def test_every_name_finds_its_own_parent_run(tmp_path):
    from omegaconf import OmegaConf

    from rnnsweep.tracking import PARENT_ROLE, Tracker, filter_value

    cfg = OmegaConf.create({"tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db",
                                         "artifact_root": str(tmp_path / "artifacts")}})
    tracker = Tracker(cfg.tracking)
    ids = {name: tracker.start_run("exp", "p", {"study_name": name, "role": PARENT_ROLE})
           for name in NAMES}
    tracker.start_run("exp", "t", {"study_name": "it's", "role": "trial"})
    for name in NAMES:
        assert tracker.find_parent("exp", name) == ids[name], name
    assert tracker.find_parent("exp", "it") is None and tracker.find_parent("exp", "'") is None
    # Each literal filter_value writes matches exactly its own name.
    quotable = [n for n in NAMES if not ("'" in n and '"' in n) and not ('"' in n
                                                                      and n.endswith("\\"))]
    assert len(quotable) == len(NAMES) - 2
    for name in quotable:
        runs = tracker.find_runs("exp", f"tags.study_name = {filter_value(name)}")
        assert [r.data.tags["study_name"] for r in runs] == [name] * len(runs) and runs, name
    for name in set(NAMES) - set(quotable):
        with pytest.raises(ValueError, match="cannot be written"):
            filter_value(name)


# -- make ui on a taken port ------------------------------------------------------------------
def test_make_ui_on_a_busy_port_fails_in_one_clear_line():
    import socket
    import subprocess


    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        # -o: the installed venv counts as up to date (no reinstall from a test).
        proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "ui", f"UI_PORT={port}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert ours == [f"error: 127.0.0.1:{port} is not free (Address already in use): stop the "
                    f"server using it or pick another port, e.g. UI_PORT={port + 1}"], proc.stderr
    assert "MLflow UI:" not in proc.stdout  # mlflow ui never started


@pytest.mark.parametrize(("host", "port", "problem"), [
    ("127.0.0.1", "http", "UI_PORT=http: not a port number"),
    ("127.0.0.1", "70000", "UI_PORT=70000: not a port number"),
    ("no-such-host.invalid", "5000", "host no-such-host.invalid: cannot resolve it"),
])
def test_port_check_names_a_bad_port_or_host(host, port, problem):
    import subprocess
    import sys


    proc = subprocess.run([sys.executable, "scripts/port_free.py", host, port, "UI_PORT"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {problem}"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_find_tagged_matches_any_value_in_dotted_keys_and_by_status(tmp_path):
    """The helper re-evaluation and the reports can use: every value, keys with dots."""
    from omegaconf import OmegaConf

    from rnnsweep.tracking import Tracker, find_tagged

    cfg = OmegaConf.create({"tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db",
                                         "artifact_root": str(tmp_path / "artifacts")}})
    tracker = Tracker(cfg.tracking)
    ids = {name: tracker.start_run("exp", "r", {"data.file": name, "best_trial_number": "3"})
           for name in NAMES}
    tracker.end_run(ids["it's"], "FINISHED")
    for name in NAMES:
        found = find_tagged(tracker, "exp", {"data.file": name, "best_trial_number": 3})
        assert [r.info.run_id for r in found] == [ids[name]], name
    finished = find_tagged(tracker, "exp", {"best_trial_number": 3}, status="FINISHED")
    assert [r.info.run_id for r in finished] == [ids["it's"]]
    assert find_tagged(tracker, "exp", {"data.file": "it's", "best_trial_number": 4}) == []


# -- refused before the heavy imports: the import order, not the time ------------------------
@pytest.mark.parametrize(("argv", "expected"), [
    (["-m", "cell=lstm,gur"], f"cell=gur is invalid: allowed: {CELLS}"),
    (["-m", "cell=lstm,gru", "search.ntrials=2"], "did you mean search.n_trials?"),
    (["cell=gru", "model.hiden_size=8"], "did you mean model.hidden_size?"),
    # Values out of range and wrong types: the first pass types and checks every job.
    (["model.dropout=1.5"], "model.dropout=1.5 is invalid: must be in [0, 1)"),
    (["-m", "cell=lstm,gru", "search.n_trials=0"], "search.n_trials=0 is invalid"),
    (["-m", "cell=lstm,gru", "search.space.lr.low=2", "search.space.lr.high=1"],
     "search.space.lr.low=2.0 is invalid: must be <= search.space.lr.high"),
    (["optim.lr=fast"], "optim.lr"),
])
def test_misspelt_cell_or_key_or_bad_value_is_refused_before_torch_is_imported(project, argv,
                                                                                expected):
    """`python -X importtime` lists every module the interpreter imported, on stderr."""
    from conftest import refused_before_heavy_imports

    lines = refused_before_heavy_imports(project, *argv)
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], errors


# -- a learning curve's sizes as a list (data.sizes=[...]) ------------------------------------
def test_data_sizes_is_the_sweep_over_data_size():
    from rnnsweep.overrides import expand_sizes

    assert expand_sizes(["-m", "cell=lstm,gru", "data.sizes=[0.1,0.25,1]"]) == [
        "-m", "cell=lstm,gru", "data.size=0.1,0.25,1"]
    assert expand_sizes(["cell=gru"]) == ["cell=gru"]  # nothing to expand


@pytest.mark.parametrize(("argv", "expected"), [
    (["-m", "data.sizes=[0.5]"], "needs a list of at least two sizes"),
    (["-m", "data.sizes=0.5"], "needs a list of at least two sizes"),
    (["data.sizes=[0.1,0.5]"], "needs -m (multirun)"),
    (["-m", "data.sizes=[0.1,0.5]", "data.size=small"], "not both"),
])
def test_a_bad_list_of_sizes_is_refused_in_one_line(argv, expected):
    from rnnsweep.errors import ConfigError
    from rnnsweep.overrides import expand_sizes

    with pytest.raises(ConfigError, match="data.sizes") as err:
        expand_sizes(argv)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_unsorted_or_repeated_sizes_in_the_list_are_refused(copy, monkeypatch):
    from rnnsweep.overrides import expand_sizes

    for sizes, words in (("[0.5,0.1]", "increasing order"), ("[0.1,0.1]", "listed twice")):
        argv = expand_sizes(["-m", f"data.sizes={sizes}"])
        assert words in refused(copy, monkeypatch, [*argv, "experiment=smoke"])


def test_data_sizes_from_the_command_line_exits_2_in_one_line(project):
    proc = run_train(project, "-m", "data.sizes=[0.5]", "experiment=smoke")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "data.sizes=[0.5]" in lines[0], proc.stderr
    assert not (project / "mlruns").exists() and not (project / "outputs").exists()
