"""`python -m rnnsweep.report [overrides]`: write reports/<task>/ for one sweep.

Takes the same Hydra overrides as train.py (e.g. `data=anbn report.sweep_id=20260101-120000`),
so the tracking store and the task come from the same config files as the sweep.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnsweep.console import quiet_third_party
from rnnsweep.data.registry import experiment_name
from rnnsweep.errors import ConfigError, StoreError
from rnnsweep.redact import redact
from rnnsweep.report.attach import attach
from rnnsweep.report.build import ReportWriteError, build
from rnnsweep.report.collect import load_sweep
from rnnsweep.schema import to_structured
from rnnsweep.store_init import sqlite_file
from rnnsweep.tracking import tracking_uri

log = logging.getLogger("rnnsweep.report")


def project_root() -> Path:
    root = Path(os.environ.get("RNNSWEEP_ROOT") or Path.cwd()).resolve()
    if not (root / "conf" / "config.yaml").exists():
        raise ConfigError(f"{root}: no conf/config.yaml here; run from the project root")
    return root


def load_config(root: Path, overrides: list[str]) -> DictConfig:
    os.environ["RNNSWEEP_ROOT"] = str(root)
    try:
        with initialize_config_dir(str(root / "conf"), version_base="1.3"):
            return to_structured(compose("config", overrides=overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(str(err).strip().splitlines()[0]) from None


def sweep_id_of(cfg: DictConfig, root: Path) -> str | None:
    stamp = cfg.report.sweep_stamp
    if not stamp:
        return cfg.report.sweep_id
    path = Path(stamp) if Path(stamp).is_absolute() else root / stamp
    try:
        return str(json.loads(path.read_text())["sweep_id"])
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"report.sweep_stamp={stamp}: cannot read a sweep_id ({err})") from None


def latest_experiment(uri: str) -> str | None:
    """The experiment of the run (study, trial or re-evaluation) started last, any task."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return None
    runs = client.search_runs(ids, "tags.role != 'report'", max_results=1,
                              order_by=["attributes.start_time DESC"])
    return client.get_experiment(runs[0].info.experiment_id).name if runs else None


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The same filters as a sweep: no MLflow "Downloading artifacts" bars, no Lightning tips.
    quiet_third_party(in_study=False)
    try:
        root = project_root()
        cfg = load_config(root, argv)
        uri = tracking_uri(cfg.tracking)
        # No task named: the most recent sweep of any task (what the user just ran).
        named = any(a.split("=")[0].lstrip("+~") in ("data", "data.task", "data.path")
                    for a in argv)
        experiment = cfg.report.experiment or cfg.tracking.experiment
        no_sweep = ConfigError(f"no sweep in {redact(uri)} yet: run one first (make smoke, or "
                               "python train.py -m cell=lstm,gru), then report it")
        db = sqlite_file(uri)
        if db is not None and not db.exists():
            raise no_sweep  # opening it would leave an empty store behind
        if not experiment and not named:
            experiment = latest_experiment(uri)
            if experiment is None:
                raise no_sweep
        experiment = experiment or experiment_name(cfg.data)
        sweep = load_sweep(uri, experiment, sweep_id_of(cfg, root))
        rcfg = OmegaConf.to_container(cfg.report, resolve=True)
        paths = build(sweep, rcfg, Path(cfg.report.out_dir) / experiment)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ReportWriteError as err:  # the disk's fault, not the input's: exit 1, not 2
        print(f"error: {err}; the report folder is left as it was, no file half-written: "
              "free space (or make it writable) and rerun the same command", file=sys.stderr)
        return 1
    if cfg.report.attach:
        try:
            run_id = attach(cfg.tracking, experiment, sweep, paths["dir"])
        except StoreError as err:  # e.g. a full artifact store; the report run ends FAILED
            print(f"error: {err}; the report is written ({paths['md']}) but not "
                  "attached to MLflow: fix the store and rerun the same command",
                  file=sys.stderr)
            return 1
        log.info("report attached to MLflow run %s (experiment %s)", run_id, experiment)
    log.info("report of sweep %s: %s", sweep.sweep_id, paths["md"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
