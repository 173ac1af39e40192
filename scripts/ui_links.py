"""Print where `make ui` opens: each experiment's runs table, for the model-training view.

    python scripts/ui_links.py URL [SQLITE_DB]

rnnsweep tags its experiments mlflow.experimentKind=custom_model_development. MLflow 3.17's
UI still lands on the GenAI overview unless the page is asked for the model-training view
(`?workflowType=machine_learning`, or the "Model training" switch at the top, which the
browser remembers), so the links carry it. Reads the SQLite store directly: no MLflow import,
and a store that does not exist yet is not created.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

VIEW = "workflowType=machine_learning"


def experiment_links(base_url: str, db: Path) -> list[tuple[str, str]]:
    """(experiment name, runs-table URL) of every active experiment with runs, by name."""
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = con.execute(
                "SELECT e.experiment_id, e.name FROM experiments e "
                "WHERE e.lifecycle_stage = 'active' AND EXISTS "
                "(SELECT 1 FROM runs r WHERE r.experiment_id = e.experiment_id) "
                "ORDER BY e.name").fetchall()
    except sqlite3.Error:
        return []
    base = base_url.rstrip("/")
    return [(name, f"{base}/#/experiments/{exp_id}/runs?{VIEW}") for exp_id, name in rows]


def main(argv: list[str]) -> int:
    base_url = argv[0]
    db = Path(argv[1]) if len(argv) > 1 else Path("mlruns/mlflow.db")
    print(f"MLflow UI: {base_url.rstrip('/')}/#/experiments?{VIEW}")
    for name, url in experiment_links(base_url, db):
        print(f"  runs of {name}: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
