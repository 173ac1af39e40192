"""benchmarks/results/latest.json (every section with its machine) and latest.md (tables)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
# The six-claim table of the front README, written from the evidence benchmark (make evidence).
FRONT = Path(__file__).resolve().parents[1] / "README.md"
CLAIMS_START, CLAIMS_END = "<!-- claims:start -->", "<!-- claims:end -->"
# The table of docs/performance.md (linked from the README) lives between these markers and
# is rewritten from the results file.
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def update(results_dir: Path, name: str, section: dict[str, Any]) -> dict[str, Any]:
    """Replace one section, keep the others, write JSON and Markdown; returns the whole."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "latest.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = section
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    tmp.replace(path)  # never a half-written results file
    (results_dir / "latest.md").write_text(markdown(data))
    if results_dir.resolve() == RESULTS_DIR:
        update_readme(data)
        update_claims(data)
    return data


def claims_markdown(section: dict[str, Any]) -> str | None:
    """The evidence sweep's claims table (from its report's claims.csv) with machine and date."""
    import csv
    import io

    sweep = section.get("sweeps", {}).get("evidence", {})
    text = sweep.get("claims_table")
    if not text:
        return None
    rows = list(csv.DictReader(io.StringIO(text)))
    d = section.get("machine", {})
    head = (f"`make evidence` on {section.get('measured_at', '?')[:10]}, {d.get('cpu_model')} "
            f"({d.get('cpu_cores')} cores, no GPU), torch {d.get('torch')}: "
            f"{sweep.get('wall_s', 0) / 60:.0f} min wall "
            f"(`python -m benchmarks --only evidence` rewrites this table).")
    mde = sweep.get("calibration", {}).get("undecided_mde", {})
    lines = [head, "", "| claim | verdict | minimum detectable effect (undecided) | "
             "evidence (trimmed to 300 characters) |", "|---|---|---|---|"]
    for r in rows:
        ev = r["evidence"].replace("|", "/").replace("\n", " ")
        ev = ev if len(ev) <= 300 else ev[:297] + "..."
        m = mde.get(r["claim"])
        lines.append(f"| {r['claim']} | {r['verdict']} | {'' if m is None else f'{m:.3g}'} "
                     f"| {ev} |")
    return "\n".join(lines)


def update_claims(data: dict[str, Any], readme: Path = FRONT) -> None:
    """Replace the claims table between the front README's markers, when measured."""
    block = claims_markdown(data["evidence"]) if "evidence" in data else None
    if block is not None:
        replace_between(readme, CLAIMS_START, CLAIMS_END, "\n" + block + "\n")


def update_readme(data: dict[str, Any], readme: Path = README) -> None:
    """Replace the table between the README's markers; nothing else in the file changes."""
    block = "\n".join(["", machine_line(data), "", table(data), ""])
    replace_between(readme, START, END, block)


def replace_between(path: Path, start: str, end: str, block: str) -> None:
    """Rewrite the text between two markers of a file that has both; else leave it."""
    if not path.exists():
        return
    text = path.read_text()
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(head + start + block + end + tail)


def machine_line(data: dict[str, Any]) -> str:
    """The machine of the most recent section (sections may come from different runs)."""
    newest = max(data.values(), key=lambda s: s.get("measured_at", ""))
    d = newest.get("machine", {})
    return (f"Measured on {d.get('cpu_model')}, {d.get('cpu_cores')} cores "
            f"({d.get('cpu_capability')}), torch {d.get('torch')}, oneDNN (mkldnn) "
            f"{'enabled' if d.get('mkldnn_enabled') else 'disabled'}, GPU: "
            f"{d.get('gpu') or 'none'}; details and dates in benchmarks/results/latest.md.")


def _s(stat: dict[str, float], fmt: str = "{:.3g}") -> str:
    return f"{fmt.format(stat['median'])} [{fmt.format(stat['min'])}–{fmt.format(stat['max'])}]"


def _met(ok: Any) -> str:
    return "yes" if ok else "no"


def rows(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(target, measured: median [min–max], goal, met) per measured target."""
    out: list[tuple[str, str, str, str]] = []
    if "overhead" in data:
        for cell, c in data["overhead"]["cells"].items():
            out.append((f"1. framework overhead, {cell} (CPU time; wall {_s(c['ratio_wall'])})",
                        _s(c["ratio_cpu"]), "<= 1.05", _met(c["ratio_cpu"]["median"] <= 1.05)))
    if "bookkeeping" in data:
        b = data["bookkeeping"]["bookkeeping"]
        out.append(("2. bookkeeping per trial (s)", _s(b["per_trial_s"]), "<= 0.25",
                    _met(b["per_trial_s"]["median"] <= 0.25)))
        out.append(("2. bookkeeping share of a default trial",
                    f"{100 * b['share_of_default_trial']:.1f}% (trial "
                    f"{_s(b['default_trial_s'])} s)", "<= 3%",
                    _met(b["share_of_default_trial"] <= 0.03)))
    if "search" in data:
        s = data["search"]
        for name, c in s["analysis"]["configs"].items():  # each sampler + pruner vs random
            if name == "random+none":
                continue
            out.append((f"3. {name} vs random search: optimiser steps to within 5% of its "
                        f"final best ({s['seeds']} seeds)",
                        f"{c['speedup_vs_random_to_target']:.2f}x (steps "
                        + _s(c["steps_to_target"], "{:.0f}") + "; final best at equal steps "
                        + _s(c["final_best_at_equal_steps"]) + ")", ">= 3x",
                        _met(c["speedup_vs_random_to_target"] >= 3)))
    if "scaling" in data:
        sc = data["scaling"]["speedup_vs_1x2"]
        out.append(("4. trials/min, 2 workers x 1 thread vs 1 worker x 2 threads",
                    f"{sc['2 workers x 1 thread']:.2f}x (2 workers x 2 threads: "
                    f"{sc['2 workers x 2 threads']:.2f}x)", ">= 1.7x",
                    _met(sc["2 workers x 1 thread"] >= 1.7)))
    if "sweep" in data:
        w = data["sweep"]
        same = ("same trials and best values" if w["same_trials"] and w["same_best"]
                else "trials or best values DIFFER")
        out.append((f"4b. `make sweep` wall, {w['parallel']['workers']} workers (one per core) "
                    "vs its studies one after another, back to back",
                    f"{w['ratio']:.2f} ({w['parallel']['wall_s']:.0f} s vs "
                    f"{w['sequential']['wall_s']:.0f} s; {same})", "<= 0.65",
                    _met(w["met"])))
    if "bookkeeping" in data:
        m = data["bookkeeping"]["memory"]
        out.append((f"5. peak RSS growth, trial 5 -> {m['trials']}",
                    f"{100 * m['growth']:+.1f}% ({m['peak_rss_after_trial_5_mb']:.0f} -> "
                    f"{m['peak_rss_at_end_mb']:.0f} MiB)", "<= +5%", _met(m["met"])))
    sweeps = {**data.get("e2e", {}).get("sweeps", {}),
              **data.get("evidence", {}).get("sweeps", {})}
    if sweeps:
        for name, r in sweeps.items():
            ok = r["returncode"] == 0
            budget = r.get("budget_s")
            goal = f"<= {budget:.0f} s" if budget else "recorded"
            met = _met(ok and r["wall_s"] <= budget) if budget else _met(ok)
            out.append((f"6. `{r['command']}`", f"{r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s "
                        f"CPU" + ("" if ok else f" (failed: {r['error']})"), goal, met))
            cal = r.get("calibration")
            if cal:
                worst = max((v / b for v, b in cal["best_vs_trivial"].values() if v and b),
                            default=float("nan"))
                out.append((f"6a. {name}: best re-evaluated val_loss / trivial loss (worst study)",
                            f"{worst:.2f}", "<= 0.5", _met(cal["beats_trivial_by_half"])))
                gaps = ", ".join(
                    f"{k} {v['gap_small_minus_large']:+.3f} (p={v['p_one_sided']:.2g})"
                    if "p_one_sided" in v else f"{k} {v['gap_small_minus_large']:+.3f}"
                    for k, v in cal["overfitting"].items())
                out.append((f"6b. {name}: eval gap small - large per cell (one-sided Welch)",
                            gaps or "n/a", "p < 0.05 each",
                            _met(cal["small_overfits_for_every_cell"])))
                out.append((f"6c. {name}: claims decided", f"{cal['claims_decided']} of "
                            f"{len(cal['claims'])}", ">= 4", _met(cal["claims_decided"] >= 4)))
    if "e2e" in data and "default" not in data["e2e"]["sweeps"]:
        out.append(("6. `python train.py -m cell=lstm,gru` (default profile)",
                    f"not measured at level {data['e2e'].get('level')}", "<= 600 s", "-"))
    if "kernels" in data:
        k = data["kernels"]
        peak = k["matmul_peak_1thread"]["square_1024_gflops"]
        for cell, c in k["cells"].items():
            share = 100 * c["share_of_matmul_peak"]
            out.append((f"7. {cell} fwd+bwd, {c['kernel']}",
                        f"{c['gflops_1thread']:.1f} GFLOP/s = {share:.0f}% of matmul peak "
                        f"{peak:.0f} (1 thread)", "report", "-"))
    if "cost" in data:
        from benchmarks.cost_probe import rows as cost_rows

        out += cost_rows(data["cost"])
    if data and not any(s.get("machine", {}).get("gpu") for s in data.values()):
        out.append(("GPU: cuDNN GRU/LSTM step ratio, `experiment=full` trials/min, utilisation",
                    "not measured: no GPU on this machine", "report", "-"))
    return out


def table(data: dict[str, Any]) -> str:
    lines = ["| target | measured: median [min–max] | goal | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(data)]
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    parts = ["# Benchmark results", "",
             "Written by `python -m benchmarks` (`make bench`); do not edit by hand.", ""]
    machines = {json.dumps({k: v for k, v in s.get("machine", {}).items()
                            if k not in ("load_avg_at_start", "torch_threads")}, sort_keys=True)
                for s in data.values()}
    for m in sorted(machines):
        d = json.loads(m)
        parts.append(f"Machine: {d.get('cpu_model')}, {d.get('cpu_cores')} cores "
                     f"({d.get('cpu_capability')}), torch {d.get('torch')}, oneDNN (mkldnn) "
                     f"{'enabled' if d.get('mkldnn_enabled') else 'disabled'}, "
                     f"GPU: {d.get('gpu') or 'none'}.")
    parts += ["", table(data), ""]
    for name, s in data.items():
        load = s.get("machine", {}).get("load_avg_at_start")
        parts.append(f"- {name}: measured {s.get('measured_at')} in {s.get('seconds', 0):.0f} s, "
                     f"load average at start {load}, level {s.get('level')}")
    if "kernels" in data:
        parts += ["", "GRU settings (one thread, CPU seconds per forward+backward):", ""]
        for name, v in data["kernels"]["variants"].items():
            parts.append(f"- {name}: " + ", ".join(
                f"{k}={x:.3g}" if isinstance(x, float) else f"{k}={x}" for k, x in v.items()))
    if not any(s.get("machine", {}).get("gpu") for s in data.values()):
        parts += ["", "GPU figures (cuDNN GRU/LSTM step ratio, `experiment=full` trials per "
                  "minute, utilisation, concurrent trials): not measured, no GPU on this machine."]
    return "\n".join(parts) + "\n"
