"""`python train.py ...` or `python -m rnnsweep.report ...` without paying the interpreter's
start each time: a multiprocessing forkserver imports torch, Lightning, MLflow, Optuna and
Hydra once per test worker (seconds of CPU, more than a smoke run's training), and each run is a
process forked from it that sets the run's folder, environment, argv and output files, then
executes the script or module as `__main__`.

From the script's first line on, the run is the command's: a process of its own with its own
exit code, signal handlers, atexit hooks and output; rnnsweep is imported afresh in it
(only third-party modules are preloaded) and sees only the environment it was given, plus
the variables those imports set. What differs from a new interpreter is only what happens
while the preloaded modules import (their warnings print in the server, not in the run):
tests about start-up or a clean console start a real interpreter (run_train's `fresh`).
Nothing here is shared between runs but those imports.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

# The environment before the preloads: the server imports this module first.
_BEFORE = dict(os.environ)
PRELOAD = [__name__, "torch", "lightning.pytorch", "mlflow", "mlflow.tracking", "optuna",
           "hydra", "omegaconf", "pandas", "scipy.stats", "sqlalchemy", "alembic", "rich"]
_context = None


def one_process(argv: list[str] | tuple[str, ...]) -> bool:
    """Whether train.py with these arguments runs in one process: a single run, or a sweep
    under the basic launcher (the joblib launcher's workers start interpreters of their own)."""
    return "-m" not in argv or "hydra/launcher=basic" in argv


def _exit_code(exc: SystemExit) -> int:
    """The status Python gives a SystemExit: None 0, an int itself, anything else printed, 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _child(cwd: str, argv: list[str], env: dict[str, str], out: str, err: str,
           import_path: list[str]) -> None:
    """In the forked process: become `python *argv` run in `cwd`, importing from the test
    worker's sys.path of the moment (the server keeps the one it started with)."""
    changed = {k: v for k, v in os.environ.items() if _BEFORE.get(k) != v}
    os.environ.clear()
    os.environ.update({**env, **changed})
    os.chdir(cwd)
    for fds, path in (((1, 2), out),) if out == err else (((1,), out), ((2,), err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for fd in fds:  # one open file for both when they share it, as stderr=STDOUT
            os.dup2(handle, fd)
        os.close(handle)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False, buffering=1)  # noqa: SIM115
    tests = str(Path(__file__).parent)
    sys.path[:] = [str(Path(cwd).resolve())] + [p for p in import_path if p not in ("", tests)]
    code = 0
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]  # run_module puts the module's file first
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            runpy.run_path(str(Path(cwd, argv[0]).resolve()), run_name="__main__")
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # noqa: BLE001 (an uncaught error: Python prints it and exits 1)
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class Forked:
    """A forked run with the subprocess.Popen methods the tests use."""

    def __init__(self, proc: multiprocessing.process.BaseProcess, argv: list[str]) -> None:
        self._proc, self.args, self.pid = proc, ["python", *argv], proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.exitcode

    def poll(self) -> int | None:
        return self._proc.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._proc.join(timeout)
        if self._proc.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._proc.exitcode

    def send_signal(self, sig: int) -> None:
        if self._proc.exitcode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:  # ended meanwhile, as Popen ignores it
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(cwd: Path, argv: list[str], env: dict[str, str], out: Path,
          err: Path | None = None) -> Forked:
    """`python *argv` in `cwd`, forked from the preloaded server and not waited for; its
    stdout goes to `out`, its stderr to `err` (to `out` too when None)."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    proc = _context.Process(target=_child, args=(str(cwd), list(argv), dict(env), str(out),
                                                 str(err or out), list(sys.path)))
    proc.start()
    return Forked(proc, list(argv))


def run(cwd: Path, argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python *argv` in `cwd`, forked from the preloaded
    server; kills it and raises subprocess.TimeoutExpired past `timeout` seconds, as
    subprocess.run does."""
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        proc = start(cwd, argv, env, out, err)
        try:
            code = proc.wait(timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return code, out.read_text(), err.read_text()
