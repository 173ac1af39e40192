"""Put the report into MLflow: artifacts of one run per sweep, tagged role=report."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from omegaconf import DictConfig

from rnnsweep.report.collect import Sweep
from rnnsweep.tracking import Tracker, find_tagged

REPORT_ROLE = "report"
STUDY_KEYS = ("baseline_loss", "gap_eval_mean", "gap_eval_sd")
CLAIM_NUMBERS = ("effect", "ci_low", "ci_high", "n_seeds", "mde")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
        and math.isfinite(float(v)) else None


def parent_numbers(metrics: dict, cell: str, condition: str) -> tuple[dict, dict]:
    """The metrics.json numbers a study's parent run carries: its own row (report.*) and,
    as tags, the sweep's claim verdicts (sweep_claim.<slug>). A claim's numbers pool or pick
    conditions and cells, so they are not this study's: they go on the report run alone
    (claim_numbers), never on a study run where they would read as its own."""
    row = metrics.get(cell, {}).get(condition.replace(" ", "_"), {})
    out: dict[str, float] = {}
    for key in STUDY_KEYS:
        if (v := _num(row.get(key))) is not None:
            out[f"report.{key}"] = v
    if isinstance(row.get("converged"), bool):
        out["report.converged"] = float(row["converged"])
    for key, value in (row.get("trainability") or {}).items():
        if (v := _num(value)) is not None:
            out[f"report.trainability_{key}"] = v
    tags = {f"sweep_claim.{_slug(claim)}": numbers.get("verdict", "")
            for claim, numbers in metrics.get("claims", {}).items()}
    return out, tags


def claim_numbers(metrics: dict) -> tuple[dict, dict]:
    """The report run's claim metrics (claim.<slug>.effect, ci_low, ...) and verdict tags."""
    out: dict[str, float] = {}
    tags = {}
    for claim, numbers in metrics.get("claims", {}).items():
        slug = _slug(claim)
        tags[f"claim.{slug}"] = numbers.get("verdict", "")
        for key in CLAIM_NUMBERS:
            if (v := _num(numbers.get(key))) is not None:
                out[f"claim.{slug}.{key}"] = v
    return out, tags


def attach(tracking: DictConfig, experiment: str, sweep: Sweep, folder: Path) -> str:
    """Re-running the report for the same sweep reuses its run (no duplicates in the UI)."""
    tracker = Tracker(tracking)
    found = find_tagged(tracker, experiment, {"role": REPORT_ROLE, "sweep_id": sweep.sweep_id})
    if found:
        run_id = found[0].info.run_id
        tracker.reopen(run_id)
    else:
        run_id = tracker.start_run(experiment, f"report-{sweep.sweep_id}",
                                   {"role": REPORT_ROLE, "sweep_id": sweep.sweep_id,
                                    "task": experiment})
    try:
        tracker.client.log_artifacts(run_id, str(folder), "report")
        path = folder / "metrics.json"
        numbers = json.loads(path.read_text()) if path.exists() else {}
        values, tags = claim_numbers(numbers)
        tracker.log(run_id, metrics=values, tags=tags)
        for _, parent in sweep.parents.iterrows():
            values, tags = parent_numbers(numbers, parent["tags.cell"], parent["condition"])
            tracker.log(parent["run_id"], metrics=values,
                        tags={"report_run_id": run_id, **tags})
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    tracker.end_run(run_id, "FINISHED")
    return run_id
