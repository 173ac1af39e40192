"""`make reproduce RUN=<run id>`: run a run's `reproduce` command in this interpreter's
environment (the project's .venv), whether or not the user ever activated it.

The tag reads `python train.py search=none ...`; `python` becomes this interpreter and the
environment's bin folder goes first on PATH. A study (parent) run has no command of its own:
its best trial's is run. The store is MLFLOW_TRACKING_URI, else the project's default
(sqlite:///mlruns/mlflow.db under the current folder, as `make ui` reads it).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

DEFAULT_STORE = "sqlite:///mlruns/mlflow.db"


def reproduce_argv(run_id: str, tracking_uri: str) -> tuple[list[str], str]:
    """(argv to run, the run whose command it is)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        if not db.is_file():  # the client would create an empty store
            raise SystemExit(f"make reproduce: no MLflow store at {db.resolve()} (run it in "
                             "the project folder, or set MLFLOW_TRACKING_URI)")
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise SystemExit(f"make reproduce: run {run_id!r} not found in {tracking_uri}: "
                         f"{str(err).splitlines()[0]}") from None
    command = run.data.tags.get("reproduce")
    source = run_id
    if command is None and "best_trial_run_id" in run.data.tags:
        source = run.data.tags["best_trial_run_id"]
        command = client.get_run(source).data.tags.get("reproduce")
    if not command:
        raise SystemExit(f"make reproduce: run {run_id} has no `reproduce` tag (only trials "
                         "and studies with a finished trial have one)")
    argv = shlex.split(command)
    if argv and Path(argv[0]).name.startswith("python"):
        argv[0] = sys.executable
    return argv, source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make reproduce RUN=<run id>",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--dry-run", action="store_true", help="print the command only")
    args = parser.parse_args(argv)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE
    command, source = reproduce_argv(args.run_id, uri)
    shown = shlex.join(command)
    print(f"reproducing run {source}: {shown}", file=sys.stderr, flush=True)
    if args.dry_run:
        return 0
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
