"""The sweep stage of `dvc repro`: run `train.py -m ...` under a fresh sweep id, then write a
small stamp naming that sweep.

The MLflow store is append-only and not a DVC output (DVC would delete it before each run);
the stamp is the stage's output instead, and the report stage reads the sweep id from it.

    python -m rnnsweep.report.stage STAMP -- TRAIN_ARGS...
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] != "--":
        print("error: usage: python -m rnnsweep.report.stage STAMP -- TRAIN_ARGS...",
              file=sys.stderr)
        return 2
    stamp, train_args = Path(argv[0]), [a for a in argv[2:] if a]
    sweep_id = "dvc-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    env = {**os.environ, "RNNSWEEP_SWEEP_ID": sweep_id}
    proc = subprocess.run([sys.executable, "train.py", *train_args], env=env)
    if proc.returncode != 0:
        stamp.unlink(missing_ok=True)  # no stamp: the report never reads a failed sweep
        return proc.returncode
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"sweep_id": sweep_id, "args": train_args}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
