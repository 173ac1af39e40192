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

import torch

from rnnsweep.cells import CellSpec
from rnnsweep.cost import (
    ProbeResult,
    RatioInterval,
    Size,
    SizeCost,
    log_ratio_interval,
)
from rnnsweep.cost_memory import AS_RUN, EQUAL, MODE_TEXT, Memory
from rnnsweep.data.spec import TaskSpec
from rnnsweep.model import total_parameters
from rnnsweep.report.claim_types import ARTICLE, Claim, Pair, Verdict, display
from rnnsweep.report.collect import Sweep
from rnnsweep.report.identical import identical_pairs
from rnnsweep.report.probe_setup import ProbeSetup, probe_config, probe_setup, run_probe

MIB = 2**20


def range_verdict(low: float, high: float) -> str:
    """An interval (or an exact range) wholly below 1 supports 'GRU needs less'."""
    if high < 1:
        return Verdict.SUPPORTED
    if low > 1:
        return Verdict.CONTRADICTED
    return Verdict.INCONCLUSIVE


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
