"""Every command in the ```bash blocks of README.md and docs/*.md works: its overrides compose
and validate, its make target exists, its module, executable or DVC stage exists; the slow
test runs each train.py command in smoke mode; the README's first steps work as printed in a
shell without the environment.

In-process: each `python train.py ...` (and `python -m rnnsweep.report ...`) line is expanded
into its jobs by Hydra's basic sweeper, as `-m` would launch them, and every job's config is
composed from conf/ and validated by the pipeline's `prepare`; a list of values without -m is
refused as Hydra refuses it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, clean_env, make_project_copy, run_train
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
# Appended to every real run: smoke data, one short trial, no re-evaluation.
CHEAP = ["experiment=smoke", "search.n_trials=1", "search.reeval_seeds=0",
         "trainer.max_steps=10", "trainer.val_check_steps=10"]
# Runs that need something this test does not start: a server, a prepared cache, a user file.
COMPOSE_ONLY = re.compile(r"://|data=chorales|data=file|hydra/launcher=submitit")
# Executables of the project's environment a README command may start (besides python).
VENV_BIN = Path(sys.executable).parent
# Hydra flags that take a value, and those that print instead of running (no job runs).
FLAG_VALUES = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-dir", "-cd"}
SKIP_WORDS = {"cd", "git", "ssh", "export", "source", ".", "ls", "cat", "read"}
# The README's way into the environment, printed once right after `make setup`.
ACTIVATE = [".", ".venv/bin/activate"]
# Commands that need the project's environment on PATH (make targets do not).
ENV_COMMANDS = {"python", "mlflow", "dvc", "optuna-dashboard", "pytest"}


def commands_in(path: Path) -> list[list[str]]:
    """The commands of one Markdown file's ```bash blocks, in order."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", argv[0]):
                argv = argv[1:]  # VAR=value prefixes: the command is what follows
            if argv:
                commands.append(argv)
    return commands


def readme_commands() -> list[list[str]]:
    """The README's commands, then those of every docs/ page."""
    return [argv for path in [README, *DOCS] for argv in commands_in(path)]


def _split(commands: list[list[str]]) -> tuple[list[list[str]], list[str], list[list[str]]]:
    train, make, other = [], [], []
    for argv in commands:
        if argv[:2] == ["python", "train.py"]:
            train.append(argv[2:])
        elif argv[0] == "make":
            make.extend(a for a in argv[1:] if "=" not in a)
        elif argv[0] not in SKIP_WORDS:
            other.append(argv)
    return train, make, other


def test_readme_has_the_newcomer_path() -> None:
    train, make, _ = _split(readme_commands())
    assert {"sweep", "ui", "smoke", "dashboard", "test"} <= set(make)
    assert ["-m", "cell=lstm,gru"] in [t[:2] for t in train] or any(
        "cell=lstm,gru" in t for t in train)
    assert (ROOT / "docs" / "mlflow-ui.png").is_file()
    assert "](mlflow-ui.png)" in (ROOT / "docs" / "results.md").read_text()


def test_readme_links_every_docs_page_and_each_link_resolves() -> None:
    text = README.read_text()
    for page in DOCS:
        assert f"](docs/{page.name}" in text, f"README does not link docs/{page.name}"
    for path in [README, *DOCS]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
            assert (path.parent / target).exists(), f"{path.name} links missing {target}"


def test_readme_enters_the_environment_before_its_first_python_command() -> None:
    commands = commands_in(README)
    assert commands[:1] == [["make", "sweep"]] and ["make", "test"] in commands[:2]
    assert ACTIVATE in commands, "README never says how to enter the environment"
    first_env = min(i for i, a in enumerate(commands) if a[0] in ENV_COMMANDS)
    assert commands.index(ACTIVATE) < first_env
    assert commands.index(["make", "setup"]) < commands.index(ACTIVATE)


def test_readme_first_steps_work_in_a_shell_without_the_environment(tmp_path: Path) -> None:
    """The README's lines from the activation to its first python command, in one new shell
    whose PATH lacks .venv/bin (the project copy shares this checkout's .venv)."""
    project = make_project_copy(tmp_path / "project")
    (project / ".venv").symlink_to(ROOT / ".venv")
    commands = commands_in(README)
    start = commands.index(ACTIVATE)
    first_python = next(i for i, a in enumerate(commands) if i > start and a[0] == "python")
    script = "\n".join(shlex.join(a) for a in commands[start:first_python + 1])
    venv_bin = str(ROOT / ".venv" / "bin")
    path = ":".join(p for p in os.environ.get("PATH", "").split(":")
                    if p and Path(p).resolve() != Path(venv_bin).resolve())
    env = {k: v for k, v in clean_env().items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = path or "/usr/bin:/bin"
    bare = subprocess.run(["bash", "-c", "python -c 'import hydra'"], cwd=project, env=env,
                          capture_output=True, text=True)
    assert bare.returncode != 0, "PATH still reaches the project's environment"
    proc = subprocess.run(["bash", "-euc", script], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{script}\n{proc.stderr[-2000:]}"
    assert "Config groups" in proc.stdout, proc.stdout[-2000:]


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", (ROOT / "Makefile").read_text(), re.M))


def test_make_targets_exist() -> None:
    _, make, _ = _split(readme_commands())
    targets = makefile_targets()
    assert {"setup", "sweep", "test"} <= targets  # the parse finds the Makefile's targets
    assert sorted(set(make) - targets) == [], "README names make targets the Makefile lacks"


def overrides_of(args: list[str]) -> tuple[list[str], bool]:
    """A command line's overrides (flags and their values dropped) and whether it is -m."""
    multirun = "-m" in args or "--multirun" in args
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in FLAG_VALUES:
            skip = True
        elif not a.startswith("-"):
            out.append(a)
    return out, multirun


def jobs_of(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The jobs Hydra launches for these overrides: one without -m, the basic sweeper's
    cross product with it (hydra.sweeper.params is crossed in by the sweep itself)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    if not multirun:
        return [overrides]
    return BasicSweeper.split_arguments(parsed, None)[0]


@pytest.fixture
def compose_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Compose and validate one job as train.py would, with the project root in tmp_path
    (holding a small data file for data=file data.path=...); returns the composed config."""
    from rnnsweep.job import prepare

    monkeypatch.setenv("RNNSWEEP_ROOT", str(tmp_path))
    rng = np.random.default_rng(0)
    for name in ("mine.npz",):
        np.savez(tmp_path / name, x=rng.normal(size=(40, 6, 1)).astype(np.float32),
                 y=rng.integers(0, 2, size=40))

    def run(job: list[str]):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
                cfg = compose("config", overrides=job)
            prepare(cfg)  # the pipeline's validation of every value
            return cfg
        finally:
            GlobalHydra.instance().clear()
    return run


@pytest.mark.slow  # trains or runs a study in-process for seconds
def test_every_train_command_composes_and_validates_each_of_its_jobs(compose_job) -> None:
    train, _, other = _split(readme_commands())
    lines = [t for t in dict.fromkeys(tuple(t) for t in train)]
    lines += [tuple(a[3:]) for a in other if a[:3] == ["python", "-m", "rnnsweep.report"]]
    assert len(lines) >= 5
    composed = 0
    for args in lines:
        overrides, multirun = overrides_of(list(args))
        jobs = jobs_of(overrides, multirun)
        if multirun:  # a sweep's list values really become one job each
            lists = [o for o in overrides if "," in o.split("=", 1)[-1]]
            assert len(jobs) == int(np.prod([len(o.split("=", 1)[1].split(",")) for o in lists]))
        for job in jobs:
            cfg = compose_job(job)
            groups = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir()}
            for o in OverridesParser.create().parse_overrides(job):  # each value arrived
                key = o.key_or_group
                if key.split("/")[0] in groups:
                    continue  # a group option: checked by composing it at all
                got = OmegaConf.select(cfg, key)
                assert got == o.value() or Path(str(got)).name == o.value(), (args, key, got)
            composed += 1
    assert composed >= len(lines)


def test_a_list_without_m_and_a_bad_value_are_refused(compose_job) -> None:
    """The check above can fail: what train.py would refuse is refused here too."""
    from hydra.errors import HydraException

    from rnnsweep.errors import ConfigError

    with pytest.raises((HydraException, ConfigError)):
        compose_job(*jobs_of(["cell=lstm,gru"], multirun=False))
    with pytest.raises((HydraException, ConfigError)):
        compose_job(["model.dropout=1.5"])
    with pytest.raises(HydraException):
        compose_job(["cell=transformer"])
    assert len(jobs_of(["cell=lstm,gru", "data.seq_len=10,20"], multirun=True)) == 4


def test_other_commands_name_what_exists() -> None:
    """`python -m X`: an importable module with a __main__; `dvc ...`: dvc in the environment
    and the stages, metrics, plots and params dvc.yaml declares; any other executable: in
    the project's environment."""
    _, _, other = _split(readme_commands())
    assert other
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stage_keys = {k for stage in dvc["stages"].values() for k in stage}
    needs = {"metrics": "metrics", "plots": "plots", "params": "params", "repro": "cmd"}
    for argv in other:
        line = " ".join(argv)
        if argv[:2] == ["python", "-m"]:
            module = argv[2]
            spec = importlib.util.find_spec(module)
            assert spec is not None, f"{line}: no module {module}"
            if spec.submodule_search_locations:  # a package: run through its __main__
                assert importlib.util.find_spec(f"{module}.__main__"), f"{line}: no __main__"
            else:
                assert "__main__" in Path(spec.origin).read_text(), f"{line}: not runnable"
        elif argv[0] == "python":
            pytest.fail(f"README command of an unknown kind: {line}")
        else:
            assert (VENV_BIN / argv[0]).is_file(), f"{line}: {argv[0]} not in {VENV_BIN}"
            if argv[0] == "dvc":
                assert needs.get(argv[1], argv[1]) in stage_keys | {"cmd"}, line


def _run(args: list[str], workdir: Path) -> tuple[list[str], subprocess.CompletedProcess]:
    project = make_project_copy(workdir)
    line = " ".join(args)
    if "--help" in args or "--cfg" in args:
        return args, run_train(project, *args, timeout=300)
    if COMPOSE_ONLY.search(line):
        # --cfg composes one job: take the first value of each list, without -m.
        first = [a.split(",")[0] if "=" in a else a for a in args if a != "-m"]
        return args, run_train(project, *first, "--cfg", "job", timeout=300)
    extra = list(CHEAP)
    if "-m" in args and "data.size=" not in line:
        extra.append("data.size=small")  # one data size per cell is enough here
    if "-m" in args and "hydra/launcher" not in line:
        # One process: the joblib workers' imports would cost more than the 10-step jobs
        # (the default launcher is run by tests/test_parallel_sweep.py and test_preemption).
        extra.append("hydra/launcher=basic")
    return args, run_train(project, *args, *extra, timeout=600)


@pytest.mark.slow
def test_train_commands_run_in_smoke_mode(tmp_path: Path) -> None:
    train, _, _ = _split(readme_commands())
    unique = list(dict.fromkeys(tuple(t) for t in train))
    assert unique, "README shows no python train.py command"
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda a: _run(list(a[1]), tmp_path / f"p{a[0]}"),
                                enumerate(unique)))
    for args, proc in results:
        command = "python train.py " + " ".join(args)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, f"{command}\n{proc.stderr[-2000:]}"
