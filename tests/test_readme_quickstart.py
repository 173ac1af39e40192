"""The README's first steps and its "Compare cells on your own data" recipe, as printed, in a
fresh copy of the repository's files (those git tracks or would add) and a new shell whose
PATH lacks the project's environment (`env -i PATH=/usr/bin:/bin HOME=...`). The
walkthrough (two smoke sweeps, two reports) runs once for the tests that read it (slow).

The commands come from README.md's own code blocks, so what runs is what the README says
today. Only these lines are not run as printed, and each is checked instead:

- `make sweep` and `make test` (the ten-minute sweep; the whole test suite), `make ui` and
  `make dashboard` (servers that run until stopped): `make -n` must succeed, and where the
  README's comment names the command a target runs (`make smoke   # python train.py ...`),
  `make -n` must show that command;
- the own-data sweep gets `experiment=smoke` appended, the smoke size the README documents.

The copy gets its own `.venv` that reuses this checkout's installed packages (a venv without
pip whose site-packages points at this checkout's, with the copy's own src/ first), and its
setup stamp is newer than the lock: `make setup` must find nothing to install.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

README = ROOT / "README.md"
SECTIONS = ("Quick start", "Step by step", "Compare cells on your own data")
# Commands that would run for minutes or until stopped: `make -n` only.
DRY_RUN = {"make sweep", "make test", "make ui", "make dashboard"}
SMOKE = "experiment=smoke"
MARK = ">>> "
# The command a make target's comment says it runs: `make smoke   # python train.py -m ...`.
COMMENT_COMMAND = re.compile(r"python ((?:train\.py|-m [\w.]+)(?: [^\s:;,()]+(?:,[^\s:;()]+)*)*)")


def readme_blocks() -> dict[str, list[tuple[str, str]]]:
    """Each `## ` section of README.md: its fenced code blocks as (language, body)."""
    out = {}
    for part in re.split(r"^## ", README.read_text(), flags=re.M)[1:]:
        title, _, body = part.partition("\n")
        out[title.strip()] = re.findall(r"```(\w*)\n(.*?)```", body, re.S)
    return out


def bash_lines(body: str) -> list[tuple[str, str]]:
    """(command, comment) of each line of a bash block."""
    lines = []
    for raw in body.replace("\\\n", " ").splitlines():
        argv = shlex.split(raw, comments=True)
        if argv:
            comment = raw.split(" #", 1)[1].strip() if " #" in raw else ""
            lines.append((shlex.join(argv), comment))
    return lines


def fresh_copy(dst: Path) -> Path:
    """The working tree's files that git tracks or would add (not ignored ones: no .venv,
    mlruns, reports or outputs): in a clean checkout exactly a fresh clone; in a checkout
    with work under way, the clone its next commit would make."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True, check=True)
    files = listed.stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():  # tracked but deleted in the working tree: a clone would lack it
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    return dst


def reuse_environment(project: Path) -> None:
    """project/.venv: this checkout's installed packages, the copy's own src/, no install."""
    venv = project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_paths()["purelib"])
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    # Path lines only: this checkout's own .pth files (its editable src/) are not processed.
    (venv / "lib" / version / "site-packages" / "_readme_test.pth").write_text(
        f"{project / 'src'}\n{purelib}\n")
    (venv / ".installed").touch()  # the Makefile's setup stamp, newer than every copied file


def script_for(project: Path) -> tuple[str, list[str]]:
    """The shell script of the README's steps, and the make targets to check with -n."""
    blocks = readme_blocks()
    missing = [s for s in SECTIONS if s not in blocks]
    assert not missing, f"README.md lacks the section(s) {missing}"
    steps: list[str] = []
    dry: list[tuple[str, str]] = []
    for section in SECTIONS:
        for lang, body in blocks[section]:
            if lang == "python":
                steps.append(f"python - <<'README_PYTHON'\n{body}README_PYTHON")
                continue
            assert lang == "bash", f"{section}: a ```{lang} block; the test runs bash/python"
            for command, comment in bash_lines(body):
                if command in DRY_RUN:
                    dry.append((command, comment))
                    steps.append(f"make -n {command.split(' ', 1)[1]} >/dev/null")
                    continue
                if command.startswith("make "):
                    dry.append((command, comment))
                if section == SECTIONS[2] and command.startswith("python train.py"):
                    if "experiment=" not in command:
                        command += f" {SMOKE}"
                steps.append(command)
    lines = ["exec 2>&1", "set -e",
             # the new shell does not reach the project's environment before the README's step
             "if python -c 'import hydra' 2>/dev/null; then echo 'PATH reaches .venv'; exit 97; fi"]
    for step in steps:
        first = step.splitlines()[0]
        lines += [f"echo {shlex.quote(MARK + first)}", step]
    return "\n".join(lines) + "\n", [f"{c}  # {m}" for c, m in dry]


def outputs(transcript: str) -> list[tuple[str, str]]:
    """(command, its output) in order, split at the script's markers."""
    parts = re.split(rf"^{re.escape(MARK)}(.*)$", transcript, flags=re.M)
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


@dataclass
class Walkthrough:
    project: Path
    env: dict[str, str]
    steps: list[tuple[str, str]]  # (command as run, its output)
    dry: list[str]
    seconds: float

    def outputs_of(self, command: str) -> list[str]:
        return [out for c, out in self.steps if c == command]


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> Walkthrough:
    """The README's steps, once, in a fresh copy and a new shell (see the module docstring)."""
    base = tmp_path_factory.mktemp("readme")
    project = fresh_copy(base / "clone")
    reuse_environment(project)
    script, dry = script_for(project)
    own_data = README.read_text().split(f"## {SECTIONS[2]}", 1)[1].split("\n## ", 1)[0]
    assert f"`{SMOKE}`" in own_data, "the recipe must offer the smoke size the test appends"
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(base))}
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", script], cwd=project, env=env, capture_output=True,
                          text=True, timeout=1500)
    seconds = time.monotonic() - started
    (base / "transcript.txt").write_text(f"{seconds:.0f} s\n{proc.stdout}")
    steps = outputs(proc.stdout)
    failed = steps[-1][0] if steps else "(before the first step)"
    assert proc.returncode == 0, (
        f"README step failed as printed (exit {proc.returncode}): {failed}\n"
        f"{proc.stdout[-4000:]}")
    return Walkthrough(project, env, steps, dry, seconds)


@pytest.mark.slow
def test_readme_steps_work_as_printed_in_a_new_shell(walkthrough: Walkthrough) -> None:
    setup = walkthrough.outputs_of("make setup")
    assert setup and "pip" not in setup[0], f"make setup reinstalled packages:\n{setup}"
    assert "Config groups" in walkthrough.outputs_of("python train.py --help")[0]
    # What a make target's README comment says it runs is what it runs.
    for line in walkthrough.dry:
        command, comment = line.split("  # ", 1)
        said = COMMENT_COMMAND.search(comment)
        if not said:
            continue
        shown = subprocess.run(["make", "-n", *command.split()[1:]], cwd=walkthrough.project,
                               env=walkthrough.env, capture_output=True, text=True,
                               timeout=60).stdout
        assert f".venv/bin/python {said.group(1)}" in shown, (
            f"README: `{line}`, but make -n shows:\n{shown}")


@pytest.mark.slow
def test_make_report_reports_the_sweep_just_run(walkthrough: Walkthrough) -> None:
    """After the smoke sweep the adding task, after the own-data sweep the file task, both
    with a plain `make report`; the own-data sweep's closing hint names that command."""
    reports = walkthrough.outputs_of("make report")
    assert len(reports) == 2, [c for c, _ in walkthrough.steps]
    assert "reports/adding/report.md" in reports[0], reports[0][-2000:]
    assert "reports/file-mine/report.md" in reports[1], reports[1][-2000:]
    hint = own_sweep(walkthrough).split("Next:")[-1]
    suggested = re.search(r"^\s*(make report)\b", hint, re.M)
    assert suggested, hint
    assert suggested.group(1) in [c for c, _ in walkthrough.steps]  # and it ran, above


def own_sweep(walkthrough: Walkthrough) -> str:
    return next(out for c, out in walkthrough.steps
                if c.startswith("python train.py") and "data=file" in c)


@pytest.mark.slow
def test_own_data_sweep_and_report_show_accuracy_and_the_majority_rate(
        walkthrough: Walkthrough) -> None:
    sweep = own_sweep(walkthrough)
    assert "majority" in sweep and re.search(r"\d\.\d+ \(\d\.\d+, n=\d+\)", sweep), sweep[-3000:]
    report = (walkthrough.project / "reports" / "file-mine" / "report.md").read_text()
    head = report.split("\n## 1.")[0]
    assert "## Bottom line" in head, head[:3000]
    bottom = head.split("## Bottom line", 1)[1]
    # An answer about the data, or the reason there is none, for each data size.
    for size in ("small", "large"):
        row = re.search(rf"^\| {size} \| ([^|]+) \|", bottom, re.M)
        assert row, bottom[:3000]
        assert re.search(r"lstm|gru|equivalent|undecided|no answer", row.group(1)), row.group(0)
    assert re.search(r"test accuracy .* vs majority-class rate \d", bottom), bottom[:3000]


@pytest.mark.slow
def test_commands_the_own_data_report_suggests_fit_its_task(walkthrough: Walkthrough) -> None:
    """Every `python train.py ...` the report prints selects the file task and composes."""
    report = (walkthrough.project / "reports" / "file-mine" / "report.md").read_text()
    commands = re.findall(r"`(python train\.py [^`]*)`", report)
    for command in commands:
        args = [a.split(",")[0] if "=" in a else a for a in shlex.split(command)[2:]
                if a not in ("-m", "--multirun")]
        proc = subprocess.run([".venv/bin/python", "train.py", "--cfg", "job", *args],
                              cwd=walkthrough.project, env=walkthrough.env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{command}: {proc.stderr[-1000:]}"
        assert re.search(r"^  task: file$", proc.stdout, re.M), f"{command}: not the file task"


def test_make_report_before_any_sweep_says_what_to_run(tmp_path, monkeypatch, capsys) -> None:
    """A newcomer who runs `make report` first is told to run a sweep, not about an
    experiment they never named."""
    from conftest import make_project_copy

    from rnnsweep.report.__main__ import main

    project = make_project_copy(tmp_path / "project")
    monkeypatch.setenv("RNNSWEEP_ROOT", str(project))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no sweep in ") and "make smoke" in err[0]
    assert not (project / "mlruns").exists()  # the refusal left no empty store behind
