"""Every command in the ```bash blocks of README.md and docs/*.md works: run in smoke mode or
checked to exist; the README's first steps work as printed in a shell without the environment.

`python train.py ...` runs for real in a fresh project copy with tiny settings appended (later
overrides win in Hydra); commands that need a service or a prepared file only compose their
config. `make X` must be a real target. Any other command must be exercised by another test,
listed in OTHER_COMMANDS.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, make_project_copy, run_train

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
# Appended to every real run: smoke data, one short trial, no re-evaluation.
CHEAP = ["experiment=smoke", "search.n_trials=1", "search.reeval_seeds=0",
         "trainer.max_steps=10", "trainer.val_check_steps=10"]
# Runs that need something this test does not start: a server, a prepared cache, a user file.
COMPOSE_ONLY = re.compile(r"://|data=chorales|data=file|hydra/launcher=submitit")
# Commands other tests exercise: first words -> what a test file must contain to run them.
OTHER_COMMANDS = {
    "dvc": r"[\"']dvc[\"']",
    "python -m rnnsweep.report": r"rnnsweep\.report",
    "python -m rnnsweep.data.prepare_chorales": r"prepare_chorales",
    "mlflow": r"[\"'/]mlflow[\"']",
    "optuna-dashboard": r"[\"'/]optuna-dashboard[\"']",
}
SKIP_WORDS = {"cd", "git", "ssh", "export", "source", ".", "ls", "cat"}
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


def test_make_targets_exist() -> None:
    _, make, _ = _split(readme_commands())
    for target in sorted(set(make)):
        proc = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, f"make {target}: {proc.stderr.strip()}"


def test_other_commands_are_covered() -> None:
    _, _, other = _split(readme_commands())
    for argv in other:
        line = " ".join(argv)
        match = [key for key in OTHER_COMMANDS if line == key or line.startswith(key + " ")]
        assert match, f"README command not exercised by any test: {line}"
        pattern = re.compile(OTHER_COMMANDS[max(match, key=len)])
        tests = [p for p in (ROOT / "tests").glob("test_*.py") if pattern.search(p.read_text())]
        assert tests, f"{line}: no test runs it (searched tests/ for {pattern.pattern})"


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
