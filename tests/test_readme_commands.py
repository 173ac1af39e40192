"""Every command in README.md's ```bash blocks works: run in smoke mode or checked to exist.

`python train.py ...` runs for real in a fresh project copy with tiny settings appended (later
overrides win in Hydra); commands that need a service or a prepared file only compose their
config. `make X` must be a real target. Any other command must be exercised by another test,
listed in OTHER_COMMANDS.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, make_project_copy, run_train

README = ROOT / "README.md"
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
SKIP_WORDS = {"cd", "git", "ssh", "export", "source", "ls", "cat"}


def readme_commands() -> list[list[str]]:
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", argv[0]):
                argv = argv[1:]  # VAR=value prefixes: the command is what follows
            if argv:
                commands.append(argv)
    return commands


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
    assert "docs/mlflow-ui.png" in README.read_text()


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
