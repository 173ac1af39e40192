"""Assemble the report of one sweep: sections 1-6, files under reports/<task>/, MLflow copy."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from rnnsweep.report import figures, tables
from rnnsweep.report.claims import build_claims, device_text, mean_epoch_seconds
from rnnsweep.report.collect import Sweep
from rnnsweep.report.importance import importances
from rnnsweep.report.render import Document, to_html, to_markdown
from rnnsweep.report.tables import fmt, pm


def _summary_view(s: pd.DataFrame, metric: str, test_metric: str) -> pd.DataFrame:
    return pd.DataFrame({
        "cell": s["cell"], "data": s["condition"],
        f"best trial {metric}": s["best_trial_val"].map(fmt),
        f"{metric} (re-eval)": [pm(m, d) for m, d in zip(s["val_mean"], s["val_sd"],
                                                          strict=True)],
        f"{test_metric} (re-eval)": [pm(m, d) for m, d in zip(s["test_mean"], s["test_sd"],
                                                               strict=True)],
        "gap at best epoch": [pm(m, d) for m, d in zip(s["gap_mean"], s["gap_sd"],
                                                       strict=True)],
        "seeds": s["reeval_n"], "params": s["n_params"].map(fmt), "hidden": s["hidden_size"]
        .map(fmt), "s/epoch": s["seconds_per_epoch"].map(fmt),
        "peak MiB": (s["peak_memory_bytes"] / 2**20).map(lambda v: fmt(v, 3)),
        "complete/pruned/failed": [f"{a}/{b}/{c}" for a, b, c in
                                   zip(s["complete"], s["pruned"], s["failed"], strict=True)],
    })


def metrics_json(s: pd.DataFrame, claims: list) -> dict:
    """Nested {cell: {condition: {...}}} so `dvc metrics show` lists one column per number."""
    out: dict = {}
    for _, r in s.iterrows():
        vals = {k: r[k] for k in ("best_trial_val", "val_mean", "val_sd", "test_mean", "test_sd",
                                  "gap_mean", "gap_sd", "n_params", "seconds_per_epoch",
                                  "peak_memory_bytes", "complete", "pruned", "failed")}
        clean = {k: float(v) for k, v in vals.items()
                 if isinstance(v, (int, float, np.number)) and math.isfinite(float(v))}
        out.setdefault(r["cell"], {})[r["condition"].replace(" ", "_")] = clean
    out["claims"] = {c.claim: c.verdict for c in claims}
    return out


def build(sweep: Sweep, rcfg: dict, out_dir: Path) -> dict[str, Path]:
    """Write every file of the report into out_dir (replaced as a whole); returns the paths."""
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "figures").mkdir(parents=True)
    (tmp / "tables").mkdir()
    fig_dir, tab_dir = tmp / "figures", tmp / "tables"
    metric, test_metric = sweep.metric, rcfg["test_metric"]
    mean_epoch_seconds(sweep)
    summ = tables.summary(sweep, test_metric)
    curves = tables.expected_best_curves(sweep)
    imp = importances(sweep, int(rcfg["seed"]))
    claims = build_claims(sweep, rcfg)
    backends = sorted({device_text(r) for _, r in sweep.parents.iterrows()})

    doc = Document()
    doc.heading(f"Comparison report: {sweep.experiment}, sweep {sweep.sweep_id}", 1)
    doc.para(f"{len(sweep.parents)} studies, {len(sweep.trials)} trials, {len(sweep.reevals)} "
             f"re-evaluation runs, read from MLflow. Objective: {sweep.direction} {metric}. "
             f"Device and RNN backend per cell (measured from the autograd graph): "
             f"{'; '.join(backends)}.")
    doc.heading("1. Summary per cell and data size")
    doc.para("Re-evaluation: the best configuration of each study re-trained with fresh seeds; "
             "mean ± sd over those seeds. Gap = validation - training loss at the best epoch.")
    doc.table(_summary_view(summ, metric, test_metric))

    doc.heading("2. Overfitting probe")
    doc.para("Generalisation gap and best validation value, small vs large data, per cell "
             "(re-evaluation mean ± sd); learning curves of each study's best trial.")
    doc.image(figures.overfitting(summ, fig_dir), "gap and validation value per cell and size")
    doc.image(figures.learning_curves(sweep, fig_dir), "learning curves of the best trials")

    doc.heading("3. Expected best validation value vs number of trials")
    doc.para("Dodge et al. 2019 (Show Your Work): expected best value of n trials drawn from "
             "each study's trials (pruned trials count with their best value before pruning), "
             "± 1 sd. Compare cells at equal tuning budgets, not by their single best trial.")
    doc.image(figures.expected_best(curves, metric, fig_dir), "expected best value vs trials")
    last = curves.sort_values("n_trials").groupby(["condition", "cell"]).tail(1)
    doc.table(pd.DataFrame({"data": last["condition"], "cell": last["cell"],
                            "trials": last["n_trials"],
                            f"expected best {metric}": [pm(m, s) for m, s in
                                                        zip(last["expected"], last["sd"],
                                                            strict=True)]}))

    doc.heading("4. Hyperparameter importance")
    doc.para("fANOVA (Optuna's FanovaImportanceEvaluator) per study over its complete trials. "
             "Greff et al. 2017 found the learning rate by far the most important, then the "
             "hidden size; the top parameter per study below makes that checkable.")
    doc.image(figures.importance(imp, fig_dir), "fANOVA importance per study")
    if not imp.empty:
        top = imp.sort_values("importance").groupby("study").tail(1)
        doc.table(pd.DataFrame({"study": top["study"], "most important": top["parameter"],
                                "importance": top["importance"].map(lambda v: fmt(v, 3)),
                                "complete trials": top["n_trials"]}))
    doc.image(figures.slices(sweep, fig_dir), "objective against each hyperparameter")

    doc.heading("5. Cost")
    doc.para("Parameters, seconds per epoch and peak training memory against the hidden size, "
             f"every trial. Measured on: {'; '.join(backends)}. On CPU, peak memory is the bytes "
             "of tensors saved for backward in one training step; on CUDA, the allocator's peak.")
    doc.image(figures.cost(sweep.trials, "; ".join(backends), fig_dir), "cost vs hidden size")

    doc.heading("6. Claims")
    for axis in sweep.axes:
        if axis.removeprefix("tags.data.") in rcfg["length_keys"]:
            lengths = tables.by_length(sweep, axis, test_metric)
            lengths.to_csv(tab_dir / "by_length.csv", index=False)
            doc.image(figures.by_length(lengths, axis.removeprefix("tags."), test_metric,
                                        fig_dir), "test metric against sequence length")
    claims_df = pd.DataFrame([{"claim": c.claim, "verdict": c.verdict, "evidence": c.evidence,
                               "compared with": c.reference} for c in claims])
    doc.para(f"Tests at alpha={rcfg['alpha']}; CIs are 95% percentile bootstrap intervals "
             f"({rcfg['bootstrap_resamples']} resamples). 'Comparable' requires the CI within "
             f"±{rcfg['equivalence_margin']:.0%} of the LSTM mean.")
    doc.table(claims_df)

    summ.to_csv(tab_dir / "summary.csv", index=False)
    curves.to_csv(tmp / "expected_best.csv", index=False)
    imp.to_csv(tab_dir / "importance.csv", index=False)
    claims_df.to_csv(tab_dir / "claims.csv", index=False)
    sweep.trials.drop(columns=[c for c in sweep.trials.columns if c.startswith("tags.repro")])\
        .to_csv(tab_dir / "trials.csv", index=False)
    (tmp / "metrics.json").write_text(json.dumps(metrics_json(summ, claims), indent=2) + "\n")
    (tmp / "report.md").write_text(to_markdown(doc, tmp))
    (tmp / "report.html").write_text(to_html(doc, f"{sweep.experiment} {sweep.sweep_id}"))
    # Swap in the finished folder: a failed build never leaves a half-written report.
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return {"dir": out_dir, "md": out_dir / "report.md", "html": out_dir / "report.html",
            "metrics": out_dir / "metrics.json"}
