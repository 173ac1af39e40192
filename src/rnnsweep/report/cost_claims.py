"""The cost claims: GRU has fewer parameters, trains faster, uses less memory.

Parameter counts and bytes per step are deterministic at a size: they are computed at the
sweep's sizes and shown with their range over those sizes, never tested. Speed comes from
the cost probe (rnnsweep.cost) run here, at report time: LSTM and GRU at identical sizes
(the best configuration of each study, at most `report.cost_probe.max_sizes`), timed
interleaved in one process, in two kernel modes: as run (this machine's kernels: on a CPU
oneDNN's fused LSTM against rnnsweep's fused GRU) and on equal kernels (oneDNN and cuDNN
off, torch's own GRU: ATen's per-step loop for both). The verdicts about the cells come from
the equal-kernel figures; the as-run ones stand beside them with their kernels' names, so
architecture cost (FLOPs, the structural 3/4) can be told from this build's kernels. Speed:
supported when every size's interval of GRU/LSTM lies below 1, contradicted when every one
lies above 1 (an intersection-union rule, so one alpha covers all sizes), else
inconclusive. Memory: weights, gradients, Adam state and activations; a fused kernel's
workspace (oneDNN's LSTM keeps one) is shown apart, in the as-run figure.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnsweep.cells import CellSpec
from rnnsweep.cost import (
    ProbeResult,
    RatioInterval,
    Size,
    SizeCost,
    log_ratio_interval,
    probe,
)
from rnnsweep.cost_memory import AS_RUN, EQUAL, MODE_TEXT, Memory
from rnnsweep.data.spec import TaskSpec
from rnnsweep.errors import ConfigError
from rnnsweep.model import hidden_size_for_budget, total_parameters
from rnnsweep.report.claim_types import ARTICLE, Claim, Pair, Verdict, display
from rnnsweep.report.collect import Sweep
from rnnsweep.report.identical import identical_pairs
from rnnsweep.schema import CostProbeConfig

MIB = 2**20


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


def range_verdict(low: float, high: float) -> str:
    """An interval (or an exact range) wholly below 1 supports 'GRU needs less'."""
    if high < 1:
        return Verdict.SUPPORTED
    if low > 1:
        return Verdict.CONTRADICTED
    return Verdict.INCONCLUSIVE


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
    configs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (rid, uri) in enumerate(zip(sweep.parents["run_id"],
                                           sweep.parents["artifact_uri"], strict=True)):
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{str(uri).rstrip('/')}/config.yaml", dst_path=f"{tmp}/{i}")
            configs[rid] = yaml.safe_load(Path(path).read_text())
    return configs


def _best(parent: pd.Series, key: str) -> float | None:
    value = parent.get(f"tags.best.{key}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


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
        layers = int(_best(parent, "num_layers") or model.get("num_layers", 1))
        hidden = _best(parent, "hidden_size")
        budget = _best(parent, "param_budget")
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


# -- the three claims -------------------------------------------------------------------

def params_claim(spec: TaskSpec | None, sizes: list[Size], matched: bool,
                 reason: str = "", pair: Pair = ARTICLE,
                 specs: dict[str, CellSpec] | None = None) -> Claim:
    """Exact counts at the sweep's sizes; `specs` maps a cell's name to its config (a cell
    of one's own is counted from its class)."""
    text = pair.texts()[0]
    if matched:
        return Claim(text, Verdict.NOT_MEASURED,
                     "parameter-matched sweep: cells have equal parameter counts by design; "
                     "run with search.match_params=false", "Chung et al. 2014")
    if spec is None or not sizes:
        return Claim(text, Verdict.NOT_MEASURED, f"{Verdict.NOT_MEASURED}: {reason}")
    specs = specs or {}
    first, second = (specs.get(c, c) for c in pair)
    ratios = [total_parameters(second, spec, s.hidden_size, s.num_layers)
              / total_parameters(first, spec, s.hidden_size, s.num_layers) for s in sizes]
    low, high = min(ratios), max(ratios)
    labels = ", ".join(s.label() for s in sizes)
    why = ("recurrent layers 3/4 by structure (3 gate blocks against 4), the head is shared"
           if pair.article else "the head is shared")
    return Claim(text, range_verdict(low, high),
                 f"{pair.ratio()} parameters {low:.3g}-{high:.3g} at the sweep's sizes "
                 f"({labels}); exact counts, not a test: {why}",
                 "Cho et al. 2014; Chung et al. 2014", effect=high, ci_low=low, ci_high=high)


def logged_params_claim(sweep: Sweep, matched: bool, reason: str,
                        pair: Pair = ARTICLE) -> Claim:
    """Without the task's spec: the counts trials logged on identical configurations."""
    first, second = identical_pairs(sweep, "metrics.n_params", pair)
    if matched or not first:
        return params_claim(None, [], matched, reason, pair)
    ratios = [g / m for m, g in zip(first, second, strict=True)]
    low, high = min(ratios), max(ratios)
    return Claim(pair.texts()[0], range_verdict(low, high),
                 f"{pair.ratio()} parameters {low:.3g}-{high:.3g} over {len(ratios)} identical "
                 f"configurations (logged counts, exact, not a test; {reason})",
                 "Cho et al. 2014; Chung et al. 2014", effect=high, ci_low=low, ci_high=high)


def _kernels(s: SizeCost, mode: str) -> str:
    return ", ".join(f"{c} {v.kernel}" for c, v in s.mode(mode)[0].items())


def _kernel_note(result: ProbeResult, s: SizeCost, mode: str) -> str:
    """Kernels per size only when they differ between sizes; else once, in the header."""
    same = len({_kernels(x, mode) for x in result.sizes}) == 1
    return "" if same else f"; {_kernels(s, mode)}"


def _mode_header(result: ProbeResult, mode: str) -> str:
    """What a mode is, with the kernels that ran (once, when every size ran the same)."""
    first = result.sizes[0]
    kernels = "" if _kernel_note(result, first, mode) else f"; kernels: {_kernels(first, mode)}"
    return f"on {MODE_TEXT[mode]}{kernels}"


def _deciding_mode(result: ProbeResult) -> tuple[str, str]:
    """The mode the verdict is taken from, and a note when it is not the equal-kernel one."""
    if EQUAL in result.modes:
        return EQUAL, ""
    return AS_RUN, ("; equal kernels not probed: the verdict is about this machine's kernels, "
                    "not the cells")


def _flops_ratio(s: SizeCost, pair: Pair) -> float:
    return s.cells[pair.second].flops / s.cells[pair.first].flops


def _time_intervals(result: ProbeResult, mode: str, level: float,
                    pair: Pair) -> list[RatioInterval]:
    return [log_ratio_interval(s.mode(mode)[0][pair.second].seconds,
                               s.mode(mode)[0][pair.first].seconds, level)
            for s in result.sizes]


def _time_parts(result: ProbeResult, mode: str, rs: list[RatioInterval], pair: Pair,
                flops: bool = True) -> str:
    parts = []
    for s, r in zip(result.sizes, rs, strict=True):
        cells = s.mode(mode)[0]
        ratio = f", FLOPs ratio {_flops_ratio(s, pair):.3g}" if flops else ""
        times = ", ".join(f"{display(c)} {1e3 * cells[c].spread()['median']:.3g} ms/step"
                          for c in pair)
        parts.append(f"{s.size.label()}: {r.text()}{ratio}, {times}"
                     f"{_kernel_note(result, s, mode)}")
    return "; ".join(parts)


def _speed(result: ProbeResult, level: float, pair: Pair = ARTICLE) -> Claim:
    """Per-size interval at `level` on equal kernels; verdict from the envelope of all
    sizes' intervals. The as-run intervals stand beside it, deciding nothing."""
    mode, note = _deciding_mode(result)
    rs = _time_intervals(result, mode, level, pair)
    low, high = min(r.low for r in rs), max(r.high for r in rs)
    same_side = all(r.estimate < 1 for r in rs) or all(r.estimate > 1 for r in rs)
    # Intersection-union: decided at alpha only if every size is; p is the largest p.
    p = max(r.p_value for r in rs) if same_side else 1.0
    unit = "CPU time" if result.device == "cpu" else "synchronised CUDA time"
    faster = [s.size.label() for s, r in zip(result.sizes, rs, strict=True) if r.high < 1]
    slower = [s.size.label() for s, r in zip(result.sizes, rs, strict=True) if r.low > 1]
    mixed = (f"; depends on size: {display(pair.second)} faster at {', '.join(faster)}, "
             f"slower at {', '.join(slower)}" if faster and slower else "")
    text = (f"{pair.ratio()} {unit} per training step, interleaved cost probe at report time "
            f"({result.timer}, {result.threads} thread(s), {result.device}, batch "
            f"{result.batch_size} x T={result.seq_len}), {_mode_header(result, mode)}: "
            + _time_parts(result, mode, rs, pair) + mixed + note)
    if mode == EQUAL:  # this build's kernels, beside the verdict
        text += (f". Beside it, not deciding, {_mode_header(result, AS_RUN)}: "
                 + _time_parts(result, AS_RUN, _time_intervals(result, AS_RUN, level, pair),
                               pair, flops=False))
    text += "; a verdict needs every size's interval on one side of 1"
    effect = math.exp(sum(math.log(r.estimate) for r in rs) / len(rs))
    ref = ("DeepBench (GPU) 0.69-0.80; a fused kernel can outweigh the 3/4 FLOPs"
           if pair.article else "")
    return Claim(pair.texts()[1], range_verdict(low, high), text, ref,
                 effect=effect, ci_low=low, ci_high=high, p_value=p,
                 decide=lambda a: _speed(result, 1 - a, pair))


def speed_claim(result: ProbeResult | None, alpha: float, reason: str = "",
                pair: Pair = ARTICLE) -> Claim:
    if result is None:
        return Claim(pair.texts()[1], Verdict.NOT_MEASURED, f"{Verdict.NOT_MEASURED}: {reason}")
    return _speed(result, 1 - alpha, pair)


def _mib(b: int) -> str:
    return f"{b / MIB:.3g}"


def _bytes_terms(m: Memory) -> str:
    ws = f" + kernel workspace {_mib(m.workspace)}" if m.workspace else ""
    return f"activations {_mib(m.activations)}{ws}"


def _memory_parts(result: ProbeResult, mode: str, full: bool,
                  pair: Pair) -> tuple[list[float], str]:
    """Per size: GRU/LSTM total bytes (a workspace term only where a kernel kept one);
    `full`: the whole breakdown, else weights+grads+Adam in one figure."""
    ratios, parts = [], []
    for s in result.sizes:
        cells = s.mode(mode)[0]
        g, m = cells[pair.second].memory, cells[pair.first].memory
        ratios.append(g.total / m.total)
        if full:
            state = [f"params {_mib(x.params)} + grads {_mib(x.grads)} + Adam "
                     f"{_mib(x.optimizer)}" for x in (g, m)]
            extra = (f"; weights+grads+Adam {g.model_state / m.model_state:.3g}, activations "
                     f"{g.activations / max(m.activations, 1):.3g}; FLOPs ratio "
                     f"{_flops_ratio(s, pair):.3g}")
        else:
            state = [f"weights+grads+Adam {_mib(x.model_state)}" for x in (g, m)]
            extra = ""
        parts.append(f"{s.size.label()}: {ratios[-1]:.3g} ({display(pair.second)} "
                     f"{_mib(g.total)} MiB = {state[0]} + {_bytes_terms(g)}; "
                     f"{display(pair.first)} {_mib(m.total)} MiB = {state[1]} "
                     f"+ {_bytes_terms(m)}{extra}{_kernel_note(result, s, mode)})")
    return ratios, "; ".join(parts)


def memory_claim(result: ProbeResult | None, reason: str = "", pair: Pair = ARTICLE) -> Claim:
    """GRU/LSTM bytes per step on equal kernels decide (exact, a range over sizes); the
    as-run bytes, with a fused kernel's workspace, stand beside them."""
    if result is None:
        return Claim(pair.texts()[2], Verdict.NOT_MEASURED, f"{Verdict.NOT_MEASURED}: {reason}")
    mode, note = _deciding_mode(result)
    # On equal kernels no vendor kernel runs, so the total is weights, grads, Adam and
    # activations alone (workspace 0): what the cells themselves keep.
    ratios, parts = _memory_parts(result, mode, True, pair)
    low, high = min(ratios), max(ratios)
    acts = ("tensors saved for backward" if result.device == "cpu"
            else "allocator peak minus weights, grads, Adam state and kernel workspace")
    text = (f"{pair.ratio()} bytes per training step {low:.3g}-{high:.3g} over the sweep's sizes, "
            f"exact at each size (not a test; batch {result.batch_size} x "
            f"T={result.seq_len}, {result.device}; activations = {acts}), "
            f"{_mode_header(result, mode)}: {parts}{note}")
    if mode == EQUAL:
        _, as_run = _memory_parts(result, AS_RUN, False, pair)
        text += (f". Beside it, not deciding, {_mode_header(result, AS_RUN)}: {as_run}; "
                 "kernel workspace = the opaque buffer a fused vendor kernel keeps for "
                 "backward in place of the gates' saved tensors")
    return Claim(pair.texts()[2], range_verdict(low, high), text,
                 "structural 3/4 for weights, gradients and Adam state; activations depend "
                 "on the kernel (oneDNN's LSTM keeps a workspace)",
                 effect=high, ci_low=low, ci_high=high)


def cost_claims(sweep: Sweep, rcfg: dict, pairs: list[Pair] | None = None) -> list[Claim]:
    """The three cost claims of each pair, pair by pair (see module doc); the probe runs
    once for every cell of the sweep."""
    pairs = pairs or [ARTICLE]
    alpha = float(rcfg.get("alpha", 0.05))
    pcfg = probe_config(rcfg)
    matched = bool(sweep.parents["tags.study_name"].str.endswith("-matched").all())
    try:
        setup: ProbeSetup | None = probe_setup(sweep, rcfg)
        reason = ""
    except Exception as err:  # any failure to rebuild the task: say why, keep the report
        first_line = (str(err).splitlines() or [""])[0]
        setup, reason = None, f"the task could not be rebuilt ({type(err).__name__}: " \
                              f"{first_line})"
    result = None
    if setup is not None and not pcfg.enabled:
        reason = "report.cost_probe.enabled=false"
    elif setup is not None and pcfg.device == "cuda" and not torch.cuda.is_available():
        reason = "report.cost_probe.device=cuda, but this machine has no CUDA device"
    elif setup is not None:
        result = run_probe(setup, pcfg, alpha)
    claims = []
    for pair in pairs:
        if setup is not None:
            specs = dict(zip(setup.names, setup.cells, strict=True))
            claims.append(params_claim(setup.spec, setup.sizes, matched, "", pair, specs))
        else:
            claims.append(logged_params_claim(sweep, matched, reason, pair))
        claims += [speed_claim(result, alpha, reason, pair),
                   memory_claim(result, reason, pair)]
    return claims
