"""Assemble the report of one sweep: sections 1-6, files under reports/<task>/, MLflow copy."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from rnnsweep.data.fitted_baselines import LABELS, MODELS, WINDOW, fitted_key
from rnnsweep.report import figures, published, tables, tuning
from rnnsweep.report.bookkeeping import finite
from rnnsweep.report.bottom_line import bottom_line, bottom_line_text
from rnnsweep.report.claim_types import Claim
from rnnsweep.report.claims import build_claims, device_text, mean_epoch_seconds
from rnnsweep.report.collect import Sweep
from rnnsweep.report.curves import curve_points, curves_table
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.importance import MIN_TRIALS, importances
from rnnsweep.report.render import Document, save_csv, save_text, to_html, to_markdown
from rnnsweep.report.settings import Settings
from rnnsweep.report.tables import fmt, pm


def _share(v: object) -> str:
    f = finite(v)
    return "n/a" if f is None else f"{f:.0%}"


def _converged_text(v: object, hint: str) -> str:
    if pd.isna(v):
        return "not recorded"
    return "yes" if v else f"NO: {hint}"


def _fitted_text(s: pd.DataFrame, metric: str) -> list[str] | None:
    """Per study 'linear model 0.172, 1-NN 0.275' on `metric`; None when none is recorded
    (a sweep from before the fitted baselines, or a metric they do not give)."""
    cols = {LABELS[m]: fitted_key(m, metric) for m in MODELS if fitted_key(m, metric) in s}
    if not cols or not s[list(cols.values())].notna().to_numpy().any():
        return None
    return [", ".join(f"{label} {fmt(r[col], 3)}" for label, col in cols.items()
                      if np.isfinite(r[col])) or "-" for _, r in s.iterrows()]


def _summary_view(s: pd.DataFrame, metric: str, test_metric: str) -> pd.DataFrame:
    view = pd.DataFrame({
        "cell": s["cell"], "data": s["condition"],
        f"{test_metric} (re-eval, test set)": pm(s["test_mean"], s["test_sd"]),
    })
    if s["test_acc_mean"].notna().any() and test_metric != "test_acc":
        view["test_acc (re-eval)"] = pm(s["test_acc_mean"], s["test_acc_sd"])
    if s["baseline_acc"].notna().any():
        view["majority-class rate (validation set)"] = s["baseline_acc"].map(lambda v: fmt(v, 3))
    view["trivial predictor loss (validation set)"] = s["baseline_loss"].map(fmt)
    shown = [test_metric] + (["test_acc"] if "test_acc (re-eval)" in view else [])
    for name in shown:
        fitted = _fitted_text(s, name)
        if fitted is not None:
            view[f"fitted baselines, {name} (test set)"] = fitted
    view[f"best trial {metric} (selection statistic)"] = s["best_trial_val"].map(fmt)
    view[f"{metric} (re-eval)"] = pm(s["val_mean"], s["val_sd"])
    view["eval gap at best"] = pm(s["gap_eval_mean"], s["gap_eval_sd"])
    view["seeds ok/failed"] = [f"{a}/{b}" for a, b in zip(s["reeval_n"], s["reeval_failed"],
                                                          strict=True)]
    view["converged"] = [_converged_text(v, h) for v, h in
                         zip(s["converged"], s["converged_hint"], strict=True)]
    view["params"] = s["n_params"].map(fmt)
    view["hidden"] = s["hidden_size"].map(fmt)
    view["ms/step"] = (s["seconds_per_step"] * 1000).map(lambda v: fmt(v, 3))
    view["peak MiB"] = (s["peak_memory_bytes"] / 2**20).map(lambda v: fmt(v, 3))
    view["complete (model-proposed)/pruned/failed"] = [
        f"{a} ({fmt(m)})/{b}/{c}" for a, m, b, c in
        zip(s["complete"], s["sampler_complete"], s["pruned"], s["failed"], strict=True)]
    return view


def _claim_json(c: Claim) -> dict:
    return {"verdict": c.verdict, "effect": finite(c.effect), "ci_low": finite(c.ci_low),
            "ci_high": finite(c.ci_high), "n_seeds": c.n_seeds, "mde": finite(c.mde),
            "p_value": finite(c.p_value)}


def metrics_json(s: pd.DataFrame, claims: list[Claim]) -> dict:
    """Nested {cell: {condition: {...}}} so `dvc metrics show` lists one column per number;
    `claims` holds per claim its verdict, effect, interval, seeds and mde (null when decided).
    A random-search control study is keyed '<condition>_random_search'."""
    out: dict = {}
    for _, r in s.iterrows():
        vals = {k: r[k] for k in ("best_trial_val", "val_mean", "val_sd", "test_mean", "test_sd",
                                  "test_acc_mean", "baseline_loss", "baseline_acc",
                                  "gap_eval_mean", "gap_eval_sd", "val_rise_mean", "n_params",
                                  "seconds_per_step", "seconds_per_epoch", "peak_memory_bytes",
                                  "complete", "pruned", "failed", "reeval_n", "reeval_failed")}
        clean: dict = {k: float(v) for k, v in vals.items()
                       if isinstance(v, (int, float, np.number)) and math.isfinite(float(v))}
        for key in ("baseline_loss", "gap_eval_mean", "gap_eval_sd"):
            clean.setdefault(key, None)  # the contract's keys, null when not recorded
        clean["converged"] = None if pd.isna(r["converged"]) else bool(r["converged"])
        clean["trainability"] = {"near_best": finite(r["near_best_share"]),
                                 "diverged": finite(r["diverged_share"])}
        key = r["condition"].replace(" ", "_")
        if r.get("sampler") == "random" and (
                (s["cell"] == r["cell"]) & (s["condition"] == r["condition"])).sum() > 1:
            key += "_random_search"
        out.setdefault(r["cell"], {})[key] = clean
    out["claims"] = {c.claim: _claim_json(c) for c in claims}
    return out


def init_text(sweep: Sweep) -> str:
    """Each cell's initialisation (its runs' `init` param): a condition of every verdict,
    since a cell whose keep-the-state gate starts open has a head start."""
    trials = sweep.trials
    if trials.empty or "params.init" not in trials or "tags.cell" not in trials:
        return "Initialisation: not recorded."
    per_cell = trials.dropna(subset=["params.init"]).groupby("tags.cell")["params.init"]
    parts = [f"{cell}: {' | '.join(sorted(set(values)))}" for cell, values in per_cell]
    return "Initialisation (a condition of every verdict): " + "; ".join(parts) + "."


class ReportWriteError(Exception):
    """A file of the report could not be written (a full or read-only disk); the message
    names it. Nothing was replaced: the folder holds the previous report, if any."""


def build(sweep: Sweep, rcfg: dict, out_dir: Path) -> dict[str, Path]:
    """Write every file of the report into out_dir (replaced as a whole); returns the paths.

    The files go to out_dir.partial first and replace out_dir only once all are written, so a
    failed build (a disk that fills) never leaves a half-written report that looks complete;
    the partial folder is removed, giving back the space it took, and ReportWriteError names
    the file that could not be written. A rerun writes the whole report."""
    tmp = out_dir.with_name(out_dir.name + ".partial")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        _write_files(sweep, rcfg, tmp)
        _swap(tmp, out_dir)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        failed = Path(err.filename) if err.filename else None
        if failed is not None and failed.is_relative_to(tmp):
            failed = out_dir / failed.relative_to(tmp)  # the file as the user will look for it
        if failed is None or not failed.is_relative_to(out_dir.parent):
            raise  # not a file of the report: an error of its own
        raise ReportWriteError(f"could not write {failed}: {err.strerror or err}") from err
    return {"dir": out_dir, "md": out_dir / "report.md", "html": out_dir / "report.html",
            "metrics": out_dir / "metrics.json"}


def _swap(tmp: Path, out_dir: Path) -> None:
    """tmp becomes out_dir; the previous report is set aside first and put back if the
    rename fails, so it is deleted only once the new one is in place."""
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except OSError:
        if old.exists():
            old.rename(out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_files(sweep: Sweep, rcfg: dict, tmp: Path) -> None:
    """Every file of the report, into the folder tmp (made here)."""
    (tmp / "figures").mkdir(parents=True)
    (tmp / "tables").mkdir()
    fig_dir, tab_dir = tmp / "figures", tmp / "tables"
    metric, test_metric = sweep.metric, rcfg["test_metric"]
    mean_epoch_seconds(sweep)
    if sweep.seed_looks > 1:
        # Seeds were added while undecided: every test spends alpha / looks (Bonferroni
        # over the planned looks, rnnsweep.seed_rounds), so stopping early stays valid.
        rcfg = {**rcfg, "alpha": float(rcfg["alpha"]) / sweep.seed_looks}
    summ = tables.summary(sweep, test_metric)
    curves = tables.expected_best_curves(sweep)
    imp = importances(sweep, int(rcfg["seed"]), int(rcfg.get("importance_bootstrap", 20)))
    claims = build_claims(sweep, rcfg)
    backends = sorted({device_text(r) for _, r in sweep.parents.iterrows()})

    settings = Settings.from_cfg(rcfg)
    answers = bottom_line(Evidence(sweep), settings, summ)
    doc = Document()
    doc.heading(f"Comparison report: {sweep.experiment}, sweep {sweep.sweep_id}", 1)
    doc.para(f"{len(sweep.parents)} studies, {len(sweep.trials)} trials, {len(sweep.reevals)} "
             f"re-evaluation runs, read from MLflow. Objective: {sweep.direction} {metric}. "
             f"Device and RNN backend per cell (measured from the autograd graph): "
             f"{'; '.join(backends)}.")
    if sweep.seed_looks > 1:
        doc.para(f"Re-evaluation seeds were added in rounds while the cells' comparison was "
                 f"undecided ({sweep.seed_looks} planned looks, search.reeval_max_seeds): "
                 f"every test below runs at alpha {rcfg['alpha']:.3g} = report.alpha / "
                 f"{sweep.seed_looks} looks (Bonferroni alpha spending).")
    resumed = sweep.parents.get("resumed_later", pd.Series(dtype=bool)).fillna(False)
    if resumed.any():
        doc.para("Reported as this sweep stood: studies "
                 f"{', '.join(sweep.parents.loc[resumed.astype(bool), 'tags.study_name'])} were "
                 "resumed by a later sweep; their later runs are left out and their best trial "
                 "is taken from this sweep's runs.")
    doc.heading("Bottom line")
    doc.para(f"{bottom_line_text(settings)} {init_text(sweep)}")
    doc.table(answers)

    doc.heading("1. Summary per cell and data size")
    doc.para(f"Headline figures are test-set values of re-evaluations: the best configuration "
             f"of each study re-trained with fresh seeds; mean ± sd over the finished seeds "
             f"(failed seeds counted in 'seeds ok/failed', never averaged in). 'Best trial "
             f"{metric}' is a selection statistic: the best of many noisy trials, biased in its "
             f"favour. Trivial predictor: the mean (regression) or class-prior (classification) "
             f"prediction's validation loss. Fitted baselines, on the test set like the "
             f"headline: a linear model (ridge, logistic) and 1-NN on the flattened sequence, or "
             f"on a window of the last {WINDOW} inputs for per-step tasks; one deterministic fit "
             f"each, no seeds; 1-NN gives no loss for classification (one-hot probabilities) "
             f"(rnnsweep.data.fitted_baselines). Eval gap = validation - training loss, both "
             f"in eval mode, at the best validation. Converged: the best trial's best "
             f"validation came before the last 10 % of its step budget, or that last 10 % "
             f"gained under 1 % of its whole improvement (a decaying learning rate puts the "
             f"best late by construction).")
    doc.table(_summary_view(summ, metric, test_metric))
    late = summ[summ["converged"].map(lambda v: v is False or v is np.False_)]
    if len(late):
        doc.para("Not converged (the budget may have decided, not the cell): "
                 + "; ".join(f"{r['cell']} / {r['condition']} ({r['converged_hint']})"
                             for _, r in late.iterrows()) + ".")
    tuning.section(doc, sweep, test_metric, tab_dir)  # only with search.repeats > 1

    doc.heading("2. Overfitting probe")
    doc.para("Eval-mode gap at the best validation and validation loss, small vs large data, per "
             "cell (re-evaluation mean ± sd); val_rise = last validation loss minus the best "
             "one: how far validation loss rose past its minimum before training stopped. "
             "The overfitting claim tests the interaction (gap small - large, LSTM vs GRU).")
    doc.image(figures.overfitting(summ, fig_dir, metric),
              "gap and validation value per cell and size")
    doc.table(pd.DataFrame({"cell": summ["cell"], "data": summ["condition"],
                            "eval gap at best": pm(summ["gap_eval_mean"], summ["gap_eval_sd"]),
                            "val_rise": pm(summ["val_rise_mean"], summ["val_rise_sd"])}))
    doc.image(figures.learning_curves(sweep, fig_dir), "learning curves of the best trials")

    doc.heading("3. Expected best validation value vs number of trials")
    doc.para("Dodge et al. 2019 (Show Your Work): expected best value of n trials drawn from "
             "each study's COMPLETE and PRUNED trials (pruned ones with their best value before "
             "pruning; failed and running trials left out), ± 1 sd. The estimator assumes "
             "independent, identically distributed draws: valid for random search (studies "
             "tagged search_sampler=random: the control arm), only indicative for TPE, whose "
             "draws depend on earlier trials and are pruned. Trainability (Collins et al. "
             "2017): share of a study's trials within 10 % of its best value, and share "
             "diverged (failed with a non-finite loss).")
    doc.image(figures.expected_best(curves, metric, fig_dir), "expected best value vs trials")
    last = curves.sort_values("n_trials").groupby(["condition", "cell", "sampler"]).tail(1)
    doc.table(pd.DataFrame({
        "data": last["condition"], "cell": last["cell"], "sampler": last["sampler"],
        "curve": last["control"].map(lambda c: "valid (random-search control)" if c
                                     else "indicative only (not i.i.d. draws)"),
        "trials": last["n_trials"],
        f"expected best {metric}": pm(last["expected"], last["sd"])}))
    doc.table(pd.DataFrame({"cell": summ["cell"], "data": summ["condition"],
                            "within 10 % of best": summ["near_best_share"].map(_share),
                            "diverged": summ["diverged_share"].map(_share)}))

    doc.heading("4. Hyperparameter importance")
    doc.para(f"fANOVA (Optuna's FanovaImportanceEvaluator) per study over its complete trials, "
             f"with a bootstrap spread over resampled trials. Below {MIN_TRIALS} complete trials "
             "the ranking is not reliable (flagged). Greff et al. 2017 found the learning rate "
             "by far the most important, then the hidden size.")
    doc.image(figures.importance(imp, fig_dir), "fANOVA importance per study")
    if not imp.empty:
        top = imp.sort_values("importance").groupby("study").tail(1)
        doc.table(pd.DataFrame({
            "study": top["study"], "most important": top["parameter"],
            "importance": [f"{fmt(v, 3)} ± {fmt(sd, 2)} (5-95 %: {fmt(lo, 2)}-{fmt(hi, 2)})"
                           for v, sd, lo, hi in zip(top["importance"], top["boot_sd"],
                                                    top["boot_low"], top["boot_high"],
                                                    strict=True)],
            "complete trials": top["n_trials"],
            "warning": top["few_trials"].map(lambda f: f"fewer than {MIN_TRIALS} complete "
                                             "trials: not reliable" if f else "")}))
    doc.image(figures.slices(sweep, fig_dir), "objective against each hyperparameter")

    doc.heading("5. Cost")
    doc.para("Parameters, milliseconds per optimiser step and peak training memory against the "
             "hidden size, "
             f"every trial. Measured on: {'; '.join(backends)}. On CPU, peak memory is the bytes "
             "of tensors saved for backward in one training step; on CUDA, the allocator's peak.")
    doc.image(figures.cost(sweep.trials, "; ".join(backends), fig_dir), "cost vs hidden size")

    doc.heading("6. Claims")
    curve_groups = curve_points(Evidence(sweep), settings)
    if curve_groups:  # data.size given as curve points (rnnsweep.data.sizes)
        table = curves_table(Evidence(sweep), settings, int(rcfg.get("seed", 0)))
        save_csv(table, tab_dir / "data_size_curves.csv")
        doc.para("Learning curves in data size: per cell, the exponent b of a power law "
                 "test loss ~ n^b (least squares on the mean log loss per size against log n, "
                 f"each size weighed alike; {1 - settings.alpha:.0%} t interval), the "
                 "eval-mode gap's slope per e-fold of n (how fast overfitting shrinks with "
                 "data), and where two cells' fitted curves cross, with the sizes where "
                 "they cannot be told apart (Fieller's interval). Both assume a straight "
                 "line on log-log axes over the measured sizes, nothing beyond them.")
        doc.table(table)
        doc.image(figures.data_size_curves(curve_groups, test_metric, fig_dir),
                  "test metric and eval-mode gap against the number of training sequences")
    for axis in sweep.axes:
        if axis.removeprefix("tags.data.") in rcfg["length_keys"]:
            lengths = tables.by_length(sweep, axis, test_metric)
            save_csv(lengths, tab_dir / "by_length.csv")
            doc.image(figures.by_length(lengths, axis.removeprefix("tags."), test_metric,
                                        fig_dir), "test metric against sequence length")
    claims_df = pd.DataFrame([{"claim": c.claim, "verdict": c.verdict, "evidence": c.evidence,
                               "compared with": c.reference} for c in claims])
    doc.para(f"Family-wise alpha={settings.alpha}, Holm-corrected over the claims decided by a "
             f"test; each interval is printed at the level its verdict used, so a verdict never "
             f"contradicts its interval. Differences: Welch-type t ({settings.df_rule} degrees "
             f"of freedom), losses on the log scale (ratios). 'Comparable' requires the "
             f"interval of the difference within {settings.margin_text()} in every condition "
             f"(TOST); 'contradicted' only when the interval excludes the claim. Undecided "
             f"claims state the minimum detectable effect (at {settings.power:.0%} power) and "
             f"the seeds per cell that would decide them. Only conditions where a cell beat "
             f"the trivial predictor by more than {settings.trivial_fraction:.0%} count; a "
             f"claim left with none answers 'no answer'. The same difference can carry a "
             f"wider interval here than in the bottom line, or the reverse: each interval is "
             f"at its own test's level (Holm here; Bonferroni over the bottom line's "
             f"comparisons there), and the 'comparable' claim also divides alpha by its "
             f"conditions. {init_text(sweep)}")
    doc.table(claims_df)
    published.section(doc, sweep, imp, tab_dir)  # only for a paper profile's sweep

    save_csv(summ, tab_dir / "summary.csv")
    save_csv(curves, tmp / "expected_best.csv")
    save_csv(imp, tab_dir / "importance.csv")
    save_csv(claims_df, tab_dir / "claims.csv")
    save_csv(answers, tab_dir / "bottom_line.csv")
    save_csv(sweep.trials.drop(columns=[c for c in sweep.trials.columns
                                        if c.startswith("tags.repro")]),
             tab_dir / "trials.csv")
    save_text(tmp / "metrics.json", json.dumps(metrics_json(summ, claims), indent=2) + "\n")
    save_text(tmp / "report.md", to_markdown(doc, tmp))
    save_text(tmp / "report.html", to_html(doc, f"{sweep.experiment} {sweep.sweep_id}"))
