"""A newcomer's first own-data sweep, measured: scikit-learn's digits read row by row.

    python -m benchmarks.digits_walkthrough [--shots DIR] [override ...]

What the README's "Compare cells on your own data" recipe gives a new user, followed
literally in a fresh clone of this checkout's HEAD (its committed files, this .venv's
packages; the data file outside the clone): the 8 x 8 digit images as 8 steps of 8 features,
10 classes, with the default budget (`python train.py -m cell=lstm,gru data=file
data.path=<file>`, then `python -m rnnsweep.report`, as `make report` runs it). It records

- the wall and CPU time of the sweep and of the report;
- the headline test accuracy of every study as the console's closing table, the report's
  summary table and the study's MLflow parent run show it (all three should be one number:
  the re-evaluated mean over n seeds);
- the report's fitted non-recurrent baselines beside the cells and the bottom line, and the
  same baselines refitted here by scikit-learn on the split the study logged
  (`split/indices.npz`), so a user can check them;
- with --shots, a screenshot of each figure of report.html as Chromium shows it.

Results: benchmarks/results/digits_walkthrough.json (with the machine and the load).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, machine

RESULTS = ROOT / "benchmarks" / "results" / "digits_walkthrough.json"
EXPERIMENT = "file-digits"


def write_digits(path: Path) -> dict[str, Any]:
    """The digits as the README's format wants them: x N x T x F float, integer labels y."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")  # rows are steps, columns features
    y = digits.target.astype("int64")
    np.savez(path, x=x, y=y)
    return {"n": int(x.shape[0]), "steps": int(x.shape[1]), "features": int(x.shape[2]),
            "classes": int(np.unique(y).size)}


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": " ".join(cmd[1:]), "returncode": proc.returncode,
            "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "stdout": proc.stdout, "stderr_tail": proc.stderr[-2000:] if proc.returncode else ""}


def console_table(stdout: str) -> str:
    """The sweep's closing table as printed (from its heading to the end)."""
    start = stdout.find("Sweep summary")
    return stdout[start:].strip() if start >= 0 else ""


def mlflow_headlines(project: Path) -> list[dict[str, Any]]:
    """Every study's parent run: its condition and the headline metrics it carries."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    out = []
    for run in client.search_runs([exp.experiment_id], "tags.role = 'study'"):
        m = run.data.metrics
        out.append({"cell": run.data.tags.get("cell"), "size": run.data.tags.get("data_size"),
                    "run_id": run.info.run_id,
                    "duration_s": round(((run.info.end_time or 0) - run.info.start_time) / 1000,
                                        1),
                    **{k: round(v, 4) for k, v in sorted(m.items())
                       if k.startswith(("reeval_test_acc", "reeval_n", "best_test_acc",
                                        "fitted_", "baseline_acc"))}})
    return out


def refit_baselines(project: Path, data: Path, run_id: str) -> dict[str, float]:
    """1-NN, logistic regression and an MLP on the flattened sequences, fitted by
    scikit-learn on the training rows the study logged, scored on its test rows."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    with tempfile.TemporaryDirectory() as tmp:
        path = MlflowClient().download_artifacts(run_id, "split/indices.npz", tmp)
        split = dict(np.load(path))
    arrays = np.load(data)
    x = arrays["x"].reshape(len(arrays["x"]), -1)
    y = arrays["y"]
    train, test = split["trained_on"], split["test"]  # small: the subset it trained on
    models = {"1-NN": KNeighborsClassifier(1),
              "logistic regression": LogisticRegression(max_iter=2000),
              "MLP (100 units)": MLPClassifier(max_iter=1000, random_state=0)}
    return {name: round(float(m.fit(x[train], y[train]).score(x[test], y[test])), 4)
            for name, m in models.items()} | {"n_train": int(train.size),
                                                "n_test": int(test.size)}


def screenshots(report_html: Path, shots: Path) -> list[str]:
    """Each <img> of report.html as Chromium renders it at 1,280 px, one PNG per figure."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        return []
    shots.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(report_html.as_uri())
        for i, img in enumerate(page.query_selector_all("img")):
            # Figures are embedded (data: URIs): name each by its alt text.
            alt = (img.get_attribute("alt") or "figure").lower()
            name = re.sub(r"[^a-z0-9]+", "_", alt).strip("_")[:60]
            target = shots / f"{i:02d}_{name}.png"
            img.screenshot(path=str(target))
            saved.append(target.name)  # names only: the folder is the caller's
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=Path, help="folder for a screenshot of each figure")
    parser.add_argument("overrides", nargs="*",
                        help="added to the sweep's command (experiment=smoke: a quick check "
                             "that writes no results file)")
    args = parser.parse_args(argv)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                          capture_output=True, check=True).stdout.strip()
    out: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                           "commit": head}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        clone = tmp / "rnnsweep"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        data = tmp / "digits.npz"  # outside the checkout, as the README advises
        out["data"] = write_digits(data)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RNNSWEEP_"))}
        env["PYTHONPATH"] = str(clone / "src")  # the clone's code, this .venv's packages
        sweep = timed([sys.executable, "train.py", "-m", "cell=lstm,gru", "data=file",
                       f"data.path={data}", *args.overrides], clone, env)
        out["sweep"] = {k: v for k, v in sweep.items() if k != "stdout"}
        # The data file sat in a temporary folder outside the clone: keep its name only.
        out["sweep"]["command"] = out["sweep"]["command"].replace(str(data), data.name)
        out["console_table"] = console_table(sweep["stdout"])
        report = timed([sys.executable, "-m", "rnnsweep.report"], clone, env)
        out["report"] = {k: v for k, v in report.items() if k != "stdout"}
        folder = clone / "reports" / EXPERIMENT
        tables = folder / "tables"
        if (tables / "summary.csv").exists():
            summary = pd.read_csv(tables / "summary.csv")
            keep = [c for c in summary.columns if c in ("cell", "condition", "test_acc_mean",
                                                        "test_acc_sd", "reeval_n",
                                                        "baseline_acc")
                    or c.startswith("fitted_")]
            out["report_summary"] = summary[keep].round(4).to_dict("records")
        if (tables / "bottom_line.csv").exists():
            out["bottom_line"] = pd.read_csv(tables / "bottom_line.csv").to_dict("records")
        out["mlflow"] = mlflow_headlines(clone)
        out["refit"] = {f"{s['cell']} {s['size']}": refit_baselines(clone, data, s["run_id"])
                        for s in out["mlflow"] if s["cell"] == "lstm"}
        if args.shots and (folder / "report.html").exists():
            out["screenshots"] = screenshots(folder / "report.html", args.shots)
    out["load_avg_after"] = list(os.getloadavg())
    if not args.overrides:  # the default budget, as the README runs it
        RESULTS.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"sweep rc={out['sweep']['returncode']} wall {out['sweep']['wall_seconds']} s, "
          f"report rc={out['report']['returncode']} wall {out['report']['wall_seconds']} s")
    print(out["console_table"])
    for row in out.get("report_summary", []):
        print("report:", row)
    for row in out["mlflow"]:
        print("mlflow:", row)
    print("refit here:", out["refit"])
    return 0 if out["sweep"]["returncode"] == 0 and out["report"]["returncode"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
