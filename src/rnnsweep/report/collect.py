"""Read one sweep back from MLflow: its study parents, trials, re-evaluations and curves."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from rnnsweep.errors import ConfigError
from rnnsweep.report.bookkeeping import latest_sweep_id, snapshot
from rnnsweep.report.sequential import seed_plan

CURVE_KEYS = ("train_loss", "train_loss_eval", "val_loss", "epoch_seconds")


@dataclass
class Sweep:
    """Everything the report needs, one DataFrame row per MLflow run (tags/params/metrics)."""

    experiment: str
    sweep_id: str
    metric: str
    direction: str
    space: dict[str, dict]
    parents: pd.DataFrame
    trials: pd.DataFrame
    reevals: pd.DataFrame
    # run id -> metric key -> [(step, value)], for every trial and re-evaluation run
    curves: dict[str, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)
    # data.* tags whose value differs between studies of one data size (e.g. data.T)
    axes: list[str] = field(default_factory=list)
    # Planned looks of sequential re-evaluation seeds (1: a fixed number of seeds).
    seed_looks: int = 1

    @property
    def best_key(self) -> str:
        return f"metrics.best_{self.metric}"

    @property
    def minimize(self) -> bool:
        return self.direction == "minimize"


def _search(uri: str, experiment_id: str, filter_string: str) -> pd.DataFrame:
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(
        experiment_ids=[experiment_id], filter_string=filter_string, max_results=50000,
        output_format="pandas",
    )


def config_of(client: MlflowClient, run_id: str) -> dict:
    """The config.yaml a run stored as its artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "config.yaml", tmp)
        return yaml.safe_load(Path(path).read_text())


def _condition_axes(parents: pd.DataFrame) -> list[str]:
    by_size = parents.groupby("tags.data_size")
    return [c for c in parents.columns
            if c.startswith("tags.data.") and (by_size[c].nunique(dropna=True) > 1).any()]


def condition_label(row: pd.Series, axes: list[str]) -> str:
    """'small', or 'small T=100' when the sweep varies a data key within one size."""
    extra = [f"{c.removeprefix('tags.data.')}={row[c]}" for c in axes if isinstance(row[c], str)]
    return " ".join([str(row["tags.data_size"]), *extra])


def load_sweep(uri: str, experiment: str, sweep_id: str | None = None) -> Sweep:
    """Raises ConfigError naming the experiment or sweep id when there is nothing to report."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ConfigError(f"report.experiment={experiment!r}: no such MLflow experiment in {uri}")
    parents = _search(uri, exp.experiment_id, "tags.role = 'study'")
    if parents.empty:
        raise ConfigError(f"experiment {experiment!r} holds no study runs: run a sweep first")
    found = [_search(uri, exp.experiment_id, f"tags.role = '{role}'")
             for role in ("trial", "reeval")]
    found = [df for df in found if not df.empty]
    children = pd.concat(found, ignore_index=True) if found else pd.DataFrame(
        columns=["tags.role", "tags.mlflow.parentRunId", "run_id", "status", "start_time",
                 "tags.sweep_id"])
    if sweep_id is None:
        # By the run started last: a resumed parent keeps its old start time.
        sweep_id = latest_sweep_id(pd.concat([parents, children], ignore_index=True))
    parents, children = snapshot(parents, children, sweep_id)
    if parents.empty:
        raise ConfigError(f"report.sweep_id={sweep_id!r}: no study of experiment {experiment!r}")
    cfg = config_of(client, parents["run_id"].iloc[0])
    search = cfg["search"]
    axes = _condition_axes(parents)
    for df in (parents, children):
        df["condition"] = (
            [condition_label(r, axes) for _, r in df.iterrows()] if len(df) else []
        )
    sweep = Sweep(
        experiment=experiment, sweep_id=sweep_id, metric=search["metric"],
        direction=search["direction"], space=search["space"], parents=parents,
        trials=children[children["tags.role"] == "trial"].reset_index(drop=True),
        reevals=children[children["tags.role"] == "reeval"].reset_index(drop=True),
        axes=axes,
    )
    plan = seed_plan(search, 0.05)
    sweep.seed_looks = len(plan.looks) if plan else 1
    keys = (*CURVE_KEYS, sweep.metric)
    for run_id in children["run_id"]:
        sweep.curves[run_id] = {
            key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
            for key in dict.fromkeys(keys)
        }
    sweep.trials["value"] = [trial_value(sweep, r) for _, r in sweep.trials.iterrows()]
    return sweep


def trial_value(sweep: Sweep, trial: pd.Series) -> float:
    """A trial's objective: its best validation value; a pruned trial's best before pruning."""
    if trial.get("tags.state") == "COMPLETE":
        return float(trial[sweep.best_key])
    history = [v for _, v in sweep.curves.get(trial["run_id"], {}).get(sweep.metric, [])]
    history = [v for v in history if math.isfinite(v)]
    if not history:
        return math.nan
    return min(history) if sweep.minimize else max(history)
