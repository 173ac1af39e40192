"""Put the report into MLflow: artifacts of one run per sweep, tagged role=report."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from rnnsweep.report.collect import Sweep
from rnnsweep.tracking import Tracker

REPORT_ROLE = "report"


def attach(cfg: DictConfig, experiment: str, sweep: Sweep, folder: Path) -> str:
    """Re-running the report for the same sweep reuses its run (no duplicates in the UI)."""
    tracker = Tracker(cfg)
    found = tracker.find_runs(
        experiment, f"tags.role = '{REPORT_ROLE}' and tags.sweep_id = '{sweep.sweep_id}'")
    if found:
        run_id = found[0].info.run_id
        tracker.reopen(run_id)
    else:
        run_id = tracker.start_run(experiment, f"report-{sweep.sweep_id}",
                                   {"role": REPORT_ROLE, "sweep_id": sweep.sweep_id,
                                    "task": experiment})
    try:
        tracker.client.log_artifacts(run_id, str(folder), "report")
        for parent in sweep.parents["run_id"]:
            tracker.log(parent, tags={"report_run_id": run_id})
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    tracker.end_run(run_id, "FINISHED")
    return run_id
