"""optuna-dashboard over the smoke sweep's study storage, as `make dashboard` starts it."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import optuna
from servers import free_port, serve


def test_dashboard_lists_the_sweeps_studies(smoke_sweep: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{smoke_sweep / 'mlruns' / 'optuna.db'}"
    expected = set(optuna.study.get_all_study_names(storage))
    assert len(expected) == 4
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "optuna-dashboard"), storage,
           "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with serve(cmd, f"{url}/api/studies", tmp_path / "dashboard.log", cwd=smoke_sweep):
        with urllib.request.urlopen(f"{url}/api/studies", timeout=30) as reply:
            studies = json.load(reply)["study_summaries"]
        assert {s["study_name"] for s in studies} == expected
        # Each study's trials are served too, not only its name.
        for summary in studies:
            detail_url = f"{url}/api/studies/{summary['study_id']}?after=0"
            with urllib.request.urlopen(detail_url, timeout=30) as reply:
                trials = json.load(reply)["trials"]
            finished = [t for t in trials if t["state"] in ("Complete", "Pruned")]
            assert len(finished) == 3, summary["study_name"]
        with urllib.request.urlopen(f"{url}/dashboard", timeout=30) as reply:
            assert reply.status == 200
