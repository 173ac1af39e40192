"""Published vs measured: run paper profiles, keep their results, rewrite the README table.

    python -m benchmarks --only papers                  # all four full profiles (hours here)
    python -m benchmarks --only papers --level quick    # their *_smoke variants (minutes)
    python -m benchmarks.papers weiss2018 [--smoke]     # some profiles, results merged

Each profile runs as `python train.py -m experiment=<profile>` in a fresh copy of the
project (own mlruns/; the chorale cache data/cache/chorales.npz is copied in when the
profile needs it), then `python -m rnnsweep.report` builds its report, whose "Published vs
measured" table (reports/<task>/tables/published.csv) is kept. benchmarks/results/papers.json
holds one entry per profile (wall and CPU seconds, machine, date, the table); a run replaces
only the profiles it ran. The README's table between the markers below is rewritten from
that file, so it shows what was measured and when.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, machine, project_copy
from benchmarks.report import RESULTS_DIR, replace_between

PROFILES = {"weiss2018": "anbn", "chung2014": "chorales", "hochreiter1997": "adding",
            "greff2017": "chorales"}
CACHE = Path("data") / "cache" / "chorales.npz"
RESULTS = RESULTS_DIR / "papers.json"
README = ROOT / "README.md"
PERFORMANCE = ROOT / "docs" / "performance.md"
START, END = "<!-- published:start -->", "<!-- published:end -->"
TIME_START, TIME_END = "<!-- papers-time:start -->", "<!-- papers-time:end -->"


# One-thread workers per profile (make paper reads them through --train-args): one per study
# where two workers would run the studies in two rounds (chung2014's LSTM alone in the second
# took 35 min on 2026-12-06). Not in the profile's YAML: hydra/launcher=basic has no n_jobs.
WORKERS = {"chung2014": 3, "hochreiter1997": 6, "hochreiter1997_gpu": 3}


def command_args(name: str) -> list[str]:
    """train.py's arguments for a profile, as `make paper` runs it."""
    workers = WORKERS.get(name.removesuffix("_smoke"), 2)
    return ["-m", f"experiment={name}", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={workers}"]


def run_profile(profile: str, smoke: bool, timeout: float) -> dict[str, Any]:
    """One profile's sweep and report in a fresh project copy; never raises on a failure."""
    name = f"{profile}_smoke" if smoke else profile
    task = PROFILES[profile]
    out: dict[str, Any] = {"profile": name,
                           "command": "python train.py " + " ".join(command_args(name)),
                           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "machine": machine()}
    with project_copy() as (project, env):
        if task == "chorales":
            if not (ROOT / CACHE).exists():
                return {**out, "returncode": None,
                        "error": f"not run: no chorale cache {CACHE} (make chorales)"}
            (project / CACHE).parent.mkdir(parents=True)
            shutil.copy2(ROOT / CACHE, project / CACHE)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "train.py", *command_args(name)],
                                  cwd=project, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {**out, "returncode": None, "wall_s": time.perf_counter() - started,
                    "error": f"timed out after {timeout:.0f} s"}
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.update({"wall_s": wall, "returncode": proc.returncode,
                    "cpu_s": (after.ru_utime - before.ru_utime)
                    + (after.ru_stime - before.ru_stime),
                    "load_avg_after": list(os.getloadavg())})
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:]
            return {**out, "error": tail[0] if tail else "failed"}
        report = subprocess.run([sys.executable, "-m", "rnnsweep.report", f"data={task}",
                                 "report.attach=false"], cwd=project,
                                env={**env, "RNNSWEEP_ROOT": str(project)},
                                capture_output=True, text=True, timeout=timeout)
        table = project / "reports" / task / "tables" / "published.csv"
        if report.returncode != 0 or not table.exists():
            tail = report.stderr.strip().splitlines()[-1:]
            return {**out, "error": "report: " + (tail[0] if tail else "no published table")}
        out["published_table"] = table.read_text()
        out["report_md"] = (project / "reports" / task / "report.md").read_text()
    return out


def load(path: Path = RESULTS) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def save(results: dict[str, Any], path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _cell(text: str, limit: int | None = 160) -> str:
    """A table cell; `limit` cuts long text (None: whole, for the evidence a verdict rests on:
    its searches, seeds and convergence)."""
    text = text.replace("|", "/").replace("\n", " ")
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def markdown(results: dict[str, Any]) -> str:
    """The README block: one row per published figure of each profile that was run."""
    lines = ["| profile (run) | paper: result | published | measured | verdict | evidence |",
             "|---|---|---|---|---|---|"]
    notes = []
    for profile in PROFILES:
        # the full run, then partial runs (recorded by hand with a note), then the smoke run
        names = [profile, *sorted(k for k in results if k.startswith(profile + "_")
                                  and k != f"{profile}_smoke"), f"{profile}_smoke"]
        for name in names:
            r = results.get(name)
            if r is None:
                continue
            d = r.get("machine", {})
            when = (f"{r.get('measured_at', '?')[:10]}, {d.get('cpu_cores')} cores"
                    + (f", {r['wall_s'] / 60:.0f} min wall" if r.get("wall_s") else ""))
            note = f"; {r['note']}" if r.get("note") else ""
            label = f"`{r.get('profile', name)}` ({when}{note})"
            if not r.get("published_table"):
                lines.append(f"| {label} | all rows | | {_cell(str(r.get('error')))} | "
                             "not measured | |")
                continue
            for row in csv.DictReader(io.StringIO(r["published_table"])):
                cond = f" [{row['condition']}]" if row.get("condition") else ""
                lines.append(f"| {label} | {_cell(row['paper'] + ': ' + row['result'] + cond)} | "
                             f"{row['published']} | {_cell(row['ours'])} | {row['verdict']} | "
                             f"{_cell(row['evidence'], limit=None)} |")
    missing = [p for p in PROFILES if p not in results]
    if missing:
        notes.append("Full profile not yet run here: " + ", ".join(f"`{p}`" for p in missing)
                     + ".")
    if len(lines) == 2:  # nothing measured yet: no empty table
        lines = []
    lines += ["", *notes] if notes and lines else notes
    return "\n".join(lines)


def time_table(results: dict[str, Any]) -> str:
    """docs/performance.md's block: wall and CPU time of each profile's sweep and report."""
    lines = ["| profile | measured | wall | CPU | load (1 min) at start / end | machine |",
             "|---|---|---|---|---|---|"]
    for name, r in sorted(results.items()):
        if not r.get("wall_s"):
            continue
        d = r.get("machine", {})
        start = (d.get("load_avg_at_start") or [None])[0]
        end = (r.get("load_avg_after") or [None])[0]
        load = " / ".join("?" if v is None else f"{v:.1f}" for v in (start, end))
        lines.append(f"| `{name}` | {r.get('measured_at', '?')[:10]} | "
                     f"{r['wall_s'] / 60:.0f} min | {r.get('cpu_s', 0) / 60:.0f} min | {load} "
                     f"| {d.get('cpu_model', '?')}, {d.get('cpu_cores', '?')} cores |")
    return "\n".join(lines)


def update_readme(results: dict[str, Any], readme: Path = README,
                  performance: Path = PERFORMANCE) -> None:
    head = ("Written by `python -m benchmarks --only papers` (`make papers`) from "
            "benchmarks/results/papers.json. A verdict checks the published direction over "
            "seeds: a comparison of two cells is reproduced only when its one-sided Welch "
            "test rejects after Holm's correction across that paper's comparisons "
            "(family-wise 0.05), else 'same direction, not significant'. weiss2018's "
            "published figure is whether a^1000 b^1000 is accepted (1/0, the authors' rule); "
            "the strict count (every n from 1 exact) and the count past the training range "
            "stand in its evidence. fANOVA ranks count only from studies whose best loss is "
            "at most 90 % of the trivial predictor's. Details and protocol differences are in "
            "each report's section 7.")
    replace_between(readme, START, END, "\n" + head + "\n\n" + markdown(results) + "\n")
    if performance.exists() and TIME_START in performance.read_text():
        replace_between(performance, TIME_START, TIME_END, "\n" + time_table(results) + "\n")


def run(profiles: tuple[str, ...] = tuple(PROFILES), smoke: bool = False,
        timeout: float = 4 * 3600) -> dict[str, Any]:
    """Run the profiles, merge them into papers.json, rewrite the README table."""
    results = load()
    for profile in profiles:
        print(f"  {profile}{'_smoke' if smoke else ''} ...", flush=True)
        r = run_profile(profile, smoke, timeout)
        results[r["profile"]] = r
        save(results)
        update_readme(results)
    return {"profiles": {k: {x: v for x, v in r.items() if x != "report_md"}
                         for k, r in results.items()},
            "met": all(r.get("returncode") == 0 for r in results.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.papers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles", nargs="*", default=list(PROFILES),
                        help=f"any of {', '.join(PROFILES)} (default: all)")
    parser.add_argument("--smoke", action="store_true", help="their *_smoke variants")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per profile")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: rewrite the README and docs tables from papers.json")
    parser.add_argument("--train-args", metavar="PROFILE",
                        help="run nothing: print train.py's arguments for PROFILE (make paper)")
    args = parser.parse_args(argv)
    if args.train_args:
        print(" ".join(command_args(args.train_args)))
        return 0
    if args.render:
        update_readme(load())
        return 0
    bad = [p for p in args.profiles if p not in PROFILES]
    if bad:
        print(f"error: unknown profile {', '.join(bad)}: allowed {', '.join(PROFILES)}",
              file=sys.stderr)
        return 2
    run(tuple(args.profiles), args.smoke, args.timeout)
    print(markdown(load()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
