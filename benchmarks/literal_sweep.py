"""Wall and CPU time of the literal `python train.py -m cell=lstm,gru`, this checkout against
an earlier commit, back to back on the same machine:
`python -m benchmarks.literal_sweep --before <commit>`.

Each side runs in a fresh project copy (its own stores) with this .venv's interpreter; the
earlier commit's package is put first on PYTHONPATH, so it runs its own code and config.
Both sides run what the command does there (the launcher, threads, kernels and search of
that commit), so the figure is the whole change a user sees, not one kernel's. Results go
to benchmarks/results/literal_sweep.json with the machine and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, machine

RESULTS = ROOT / "benchmarks" / "results" / "literal_sweep.json"
COMMAND = ["-m", "cell=lstm,gru"]


def run_side(label: str, source: Path, tmp: Path, pythonpath: str | None) -> dict[str, Any]:
    project = tmp / label
    project.mkdir()
    shutil.copy2(source / "train.py", project / "train.py")
    shutil.copytree(source / "conf", project / "conf")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RNNSWEEP_"))}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "train.py", *COMMAND], cwd=project, env=env,
                          capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = proc.stdout[proc.stdout.find("Sweep summary"):] if "Sweep summary" in proc.stdout \
        else ""
    return {"label": label, "returncode": proc.returncode, "wall_seconds": wall,
            "cpu_seconds": cpu, "summary": summary.strip(),
            "stderr_tail": proc.stderr[-1500:] if proc.returncode else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the earlier commit to compare with")
    args = parser.parse_args(argv)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                          capture_output=True, check=True).stdout.strip()
    results: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                               "command": "python train.py " + " ".join(COMMAND),
                               "before": args.before, "after": head}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tree = tmp / "before-tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.before],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            results["runs"] = [run_side("before", tree, tmp, str(tree / "src")),
                               run_side("after", ROOT, tmp, None)]
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           capture_output=True)
    b, a = results["runs"]
    results["wall_ratio"] = a["wall_seconds"] / b["wall_seconds"]
    results["cpu_ratio"] = a["cpu_seconds"] / b["cpu_seconds"]
    results["load_avg_after"] = list(os.getloadavg())
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    for run in results["runs"]:
        print(f"{run['label']:<7} rc={run['returncode']} wall {run['wall_seconds']:.0f} s, "
              f"CPU {run['cpu_seconds']:.0f} s")
    print(f"after / before: wall {results['wall_ratio']:.2f}, CPU {results['cpu_ratio']:.2f}")
    return 0 if all(r["returncode"] == 0 for r in results["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
