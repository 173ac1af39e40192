"""The cost probe's setup rebuilt from a sweep (rnnsweep.report.cost_claims runs it): the
task's spec, batch and longest sequence length from the studies' stored configs, the cells
they ran, and at most `report.cost_probe.max_sizes` sizes from their best configurations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnsweep.cells import CellSpec
from rnnsweep.cost import ProbeResult, Size, probe
from rnnsweep.data.spec import TaskSpec
from rnnsweep.errors import ConfigError
from rnnsweep.model import hidden_size_for_budget
from rnnsweep.report.bookkeeping import finite
from rnnsweep.report.collect import Sweep
from rnnsweep.schema import CostProbeConfig


@dataclass
class ProbeSetup:
    """What the probe needs, rebuilt from the sweep's own config."""

    spec: TaskSpec
    batch_size: int
    seq_len: int
    sizes: list[Size]
    cells: list[CellSpec]  # in the order of `names`
    threads: int = 1  # torch threads of the sweep's trials: the probe times what they ran
    names: list[str] = field(default_factory=list)  # each cell's name (its tag)


def pick_sizes(sizes: list[Size], k: int) -> list[Size]:
    """At most k distinct sizes, spread from the cheapest to the dearest (H^2 x layers)."""
    distinct = sorted(set(sizes), key=lambda s: (s.hidden_size**2 * s.num_layers, s))
    if len(distinct) <= k:
        return distinct
    if k <= 1:
        return distinct[-1:]
    return [distinct[round(i * (len(distinct) - 1) / (k - 1))] for i in range(k)]


def probe_config(rcfg: dict) -> CostProbeConfig:
    """report.cost_probe over the defaults (a hand-built rcfg may leave it out)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(CostProbeConfig),
                                 rcfg.get("cost_probe") or {})
    except OmegaConfBaseException as err:
        raise ConfigError(f"report.cost_probe: {str(err).splitlines()[0]}") from None
    pcfg: CostProbeConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    if pcfg.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"report.cost_probe.device={pcfg.device!r} is invalid: allowed: "
                          "auto, cpu, cuda")
    for key in ("max_sizes", "rounds", "min_rounds", "steps_per_round", "threads"):
        if getattr(pcfg, key) is not None and getattr(pcfg, key) < 1:
            raise ConfigError(f"report.cost_probe.{key}={getattr(pcfg, key)} is invalid: "
                              "must be >= 1")
    return pcfg


def _study_configs(sweep: Sweep) -> dict[str, dict]:
    """Each study's config.yaml, read from the run's own artifact location: a client with no
    tracking URI would create an empty mlflow.db in the working directory instead."""
    import mlflow.artifacts

    if "artifact_uri" not in sweep.parents.columns:
        raise ValueError("the sweep's study runs carry no artifact location")
    return {rid: yaml.safe_load(mlflow.artifacts.load_text(f"{str(uri).rstrip('/')}/config.yaml"))
            for rid, uri in zip(sweep.parents["run_id"], sweep.parents["artifact_uri"],
                                strict=True)}


def _seq_len(data_cfg: dict, dm: Any, length_keys: list[str]) -> int:
    """The task's length key, else the first training batch's (padded) length."""
    for key in length_keys:
        if isinstance(data_cfg.get(key), int):
            return int(data_cfg[key])
    dm.setup("fit")
    return int(next(iter(dm.train_dataloader()))[0].shape[1])


def _cell_configs(sweep: Sweep, configs: dict[str, dict]) -> dict[str, CellSpec]:
    """Each cell of the sweep (its tag) -> the cell config its studies ran, in name order; a
    study config from before cells had a `_target_` gives the built-in name."""
    found: dict[str, CellSpec] = {}
    for rid, name in zip(sweep.parents["run_id"], sweep.parents["tags.cell"], strict=True):
        node = configs.get(rid, {}).get("cell")
        found.setdefault(name, node if isinstance(node, dict) and "_target_" in node else name)
    return {c: found[c] for c in sorted(found)}


def probe_setup(sweep: Sweep, rcfg: dict, configs: dict[str, dict] | None = None) -> ProbeSetup:
    """Spec, batch, length and sizes from the studies' configs; raises when the task's data
    module cannot be rebuilt (a missing data file, an unknown task)."""
    from rnnsweep.data import build_datamodule

    configs = configs if configs is not None else _study_configs(sweep)
    length_keys = list(rcfg.get("length_keys", ["T", "seq_len"]))
    first = configs[sweep.parents["run_id"].iloc[0]]

    def length_of(rid: str) -> float:
        data = configs[rid]["data"]
        return max((float(data[k]) for k in length_keys if isinstance(data.get(k), int)),
                   default=0.0)

    # The longest sequences of the sweep: the condition where cost differences are largest.
    data_cfg = configs[max(configs, key=length_of)]["data"]
    dm = build_datamodule(OmegaConf.create(data_cfg))
    spec = dm.spec
    cell_configs = _cell_configs(sweep, configs)
    cells = list(cell_configs.values())
    sizes = []
    for _, parent in sweep.parents.iterrows():
        model = configs[parent["run_id"]].get("model", first.get("model", {}))
        layers = int(finite(parent.get("tags.best.num_layers")) or model.get("num_layers", 1))
        hidden = finite(parent.get("tags.best.hidden_size"))
        budget = finite(parent.get("tags.best.param_budget"))
        if hidden is not None:
            sizes.append(Size(int(hidden), layers))
        elif budget is not None:  # parameter-matched: each cell's size, probed for all cells
            sizes += [Size(hidden_size_for_budget(cell_configs[c], spec, int(budget), layers),
                           layers) for c in cell_configs]
        elif isinstance(parent.get("tags.best_trial_number"), str):  # hidden size not tuned
            sizes.append(Size(int(model.get("hidden_size", 64)), layers))
    if not sizes:
        raise ValueError("no study has a best configuration yet")
    pcfg = probe_config(rcfg)
    return ProbeSetup(spec, int(data_cfg.get("batch_size", 32)),
                      _seq_len(data_cfg, dm, length_keys), pick_sizes(sizes, pcfg.max_sizes),
                      cells, pcfg.threads or _trial_threads(sweep), list(cell_configs))


def _trial_threads(sweep: Sweep) -> int:
    """The torch threads most of the sweep's trials trained with (1 when unrecorded)."""
    column = sweep.trials.get("params.num_threads") if not sweep.trials.empty else None
    if column is None or column.dropna().empty:
        return 1
    return int(column.dropna().astype(int).mode().iloc[0])


def run_probe(setup: ProbeSetup, pcfg: CostProbeConfig, alpha: float) -> ProbeResult:
    device = pcfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return probe(setup.spec, setup.batch_size, setup.seq_len, setup.sizes, cells=setup.cells,
                 rounds=pcfg.rounds, steps_per_round=pcfg.steps_per_round,
                 warmup_steps=pcfg.warmup_steps, device=device, threads=setup.threads,
                 level=1 - alpha, budget_s=pcfg.budget_s, min_rounds=pcfg.min_rounds)
