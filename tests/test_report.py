"""The report built from a real smoke sweep: sections, figures, and numbers equal to MLflow's."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
import yaml
from conftest import run_python
from mlflow.tracking import MlflowClient

SECTIONS = ["Bottom line", "1. Summary", "2. Overfitting probe", "3. Expected best",
            "4. Hyperparameter", "5. Cost", "6. Claims"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_report(project: Path, *args: str) -> subprocess.CompletedProcess:
    return run_python(project, "-m", "rnnsweep.report", *args)


def runs(client: MlflowClient, role: str) -> list:
    exp = client.get_experiment_by_name("adding")
    return client.search_runs([exp.experiment_id], f"tags.role = '{role}'", max_results=1000)


@pytest.fixture(scope="module")
def report(smoke_sweep: Path) -> Path:
    proc = run_report(smoke_sweep)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return smoke_sweep / "reports" / "adding"


@pytest.fixture(scope="module")
def client(smoke_sweep: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{smoke_sweep}/mlruns/mlflow.db")


def test_sections_and_figures(report: Path) -> None:
    md = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    for section in SECTIONS:
        assert f"## {section}" in md
        assert f"<h2>{section}" in html
    pngs = sorted((report / "figures").glob("*.png"))
    assert {p.name for p in pngs} >= {"learning_curves.png", "overfitting.png",
                                      "expected_best.png", "importance.png", "slices.png",
                                      "cost.png"}
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert matplotlib.image.imread(png).shape[0] > 50  # decodes as a real image
        assert f"(figures/{png.name})" in md
    assert html.count("src='data:image/png;base64,") == len(pngs)
    assert md.index("## Bottom line") < md.index("## 1. Summary")
    for table in ("summary", "claims", "importance", "trials", "bottom_line"):
        assert not pd.read_csv(report / "tables" / f"{table}.csv").empty


def test_numbers_equal_mlflow(report: Path, client: MlflowClient) -> None:
    metrics = json.loads((report / "metrics.json").read_text())
    parents = runs(client, "study")
    reevals = runs(client, "reeval")
    assert len(parents) == 4
    for p in parents:
        cell, size = p.data.tags["cell"], p.data.tags["data_size"]
        row = metrics[cell][size]
        # the metrics.json contract: present even when the sweep did not record them
        assert {"baseline_loss", "gap_eval_mean", "gap_eval_sd", "converged",
                "trainability"} <= set(row)
        assert row["best_trial_val"] == pytest.approx(p.data.metrics["best_val_loss"])
        assert row["complete"] == p.data.metrics["n_complete"]
        assert row["pruned"] == p.data.metrics["n_pruned"]
        mine = [r.data.metrics["test_loss"] for r in reevals
                if r.data.tags["mlflow.parentRunId"] == p.info.run_id
                and r.data.tags["best_trial_number"] == p.data.tags["best_trial_number"]
                and r.info.status == "FINISHED"]
        assert row["test_mean"] == pytest.approx(statistics.fmean(mine))
        assert row["test_sd"] == pytest.approx(statistics.stdev(mine))
    summary = pd.read_csv(report / "tables" / "summary.csv")
    assert len(summary) == 4 and set(summary["device"]) == {"cpu"}


def reeval_values(client: MlflowClient, metric: str) -> dict[tuple[str, str], list[float]]:
    """(cell, data size) -> the metric of each finished re-evaluation of the study's best."""
    parents = {p.info.run_id: p for p in runs(client, "study")}
    out: dict[tuple[str, str], list[float]] = {}
    for r in runs(client, "reeval"):
        p = parents[r.data.tags["mlflow.parentRunId"]]
        if (r.info.status == "FINISHED"
                and r.data.tags["best_trial_number"] == p.data.tags["best_trial_number"]):
            out.setdefault((p.data.tags["cell"], p.data.tags["data_size"]), []).append(
                r.data.metrics[metric])
    return out


def test_claims_table(report: Path, client: MlflowClient) -> None:
    claims = pd.read_csv(report / "tables" / "claims.csv")
    assert len(claims) == 6
    long_range = claims[claims["claim"].str.contains("long-range")].iloc[0]
    assert long_range["verdict"] == "not measured by this sweep"
    assert "data.seq_len=" in long_range["evidence"]
    # Parameter counts are exact: the sampler's identical start-up trials settle the claim.
    params = claims[claims["claim"] == "GRU has fewer parameters"].iloc[0]
    assert params["verdict"] == "supported" and "0.75" in params["evidence"]
    metrics = json.loads((report / "metrics.json").read_text())
    assert {k: v["verdict"] for k, v in metrics["claims"].items()} == \
        dict(zip(claims["claim"], claims["verdict"], strict=True))
    for c in metrics["claims"].values():
        assert set(c) >= {"verdict", "effect", "ci_low", "ci_high", "n_seeds", "mde"}
        if c["verdict"] in ("supported", "contradicted"):
            assert c["mde"] is None


def keyed_reevals(client: MlflowClient, metric: str,
                  ) -> dict[tuple[str, str], dict[tuple[str, str], float]]:
    """(cell, data size) -> {(search repeat, re-evaluation seed): metric} of the finished
    re-evaluations of each study's best: seed k of both cells shares k's data draw."""
    parents = {p.info.run_id: p for p in runs(client, "study")}
    out: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
    for r in runs(client, "reeval"):
        p = parents[r.data.tags["mlflow.parentRunId"]]
        if (r.info.status == "FINISHED"
                and r.data.tags["best_trial_number"] == p.data.tags["best_trial_number"]):
            key = (p.data.tags.get("search_repeat", "0"), r.data.tags["reeval_seed"])
            out.setdefault((p.data.tags["cell"], p.data.tags["data_size"]), {})[key] = \
                r.data.metrics[metric]
    return out


def expected_overfitting(client: MlflowClient, trivial_fraction: float,
                         ) -> tuple[float | None, int, bool]:
    """The overfitting contrast recomputed from MLflow as docs/report.md defines it: per size,
    the LSTM-minus-GRU gap on seed pairs where both cells' test loss beat the trivial loss by
    trivial_fraction (each cell's learned seeds, unpaired, with fewer than two such pairs);
    small minus large. Returns (effect or None with fewer than two values in a group, the
    smallest group, whether a cell's mean stayed at the trivial loss somewhere)."""
    gaps, losses = keyed_reevals(client, "gap_at_best"), keyed_reevals(client, "test_loss")
    base = {}
    for p in runs(client, "study"):
        base.setdefault(p.data.tags["data_size"], []).append(p.data.metrics["baseline_loss"])
    limit = {size: (1 - trivial_fraction) * statistics.fmean(v) for size, v in base.items()}
    if any(statistics.fmean(losses[c, size].values()) >= limit[size]
           for c in ("lstm", "gru") for size in ("small", "large")):
        return None, 0, True
    effect, groups = 0.0, []
    for size, sign in (("small", 1.0), ("large", -1.0)):
        learned = {c: {k for k, v in losses[c, size].items() if v < limit[size]}
                   for c in ("lstm", "gru")}
        both = sorted(set(gaps["lstm", size]) & set(gaps["gru", size])
                      & learned["lstm"] & learned["gru"])
        if len(both) >= 2:
            group = [gaps["lstm", size][k] - gaps["gru", size][k] for k in both]
            groups.append(group)
            effect += sign * statistics.fmean(group)
            continue
        for c, c_sign in (("lstm", 1.0), ("gru", -1.0)):
            group = [v for k, v in gaps[c, size].items() if k in learned[c]]
            groups.append(group)
            effect += sign * c_sign * (statistics.fmean(group) if group else math.nan)
    n = min(len(g) for g in groups)
    return (effect if n >= 2 else None), n, False


def test_claim_statistics_recomputed_from_the_runs(report: Path, client: MlflowClient) -> None:
    """The two performance claims' effects, recomputed here from the re-evaluation runs in
    MLflow, and verdicts that follow from their intervals."""
    claims = json.loads((report / "metrics.json").read_text())["claims"]
    gaps = reeval_values(client, "gap_at_best")
    assert sorted(gaps) == [(c, s) for c in ("gru", "lstm") for s in ("large", "small")]
    # LSTM overfits more: (gap small - gap large) of LSTM minus the same of GRU, on the seeds
    # where both cells learned.
    overfits = claims["LSTM overfits more on small data"]
    conf = Path(__file__).parents[1] / "conf" / "report" / "default.yaml"
    trivial = float(yaml.safe_load(conf.read_text())["trivial_fraction"])
    effect, n, unlearned = expected_overfitting(client, trivial)
    if unlearned:
        assert overfits["verdict"] == "no answer" and overfits["effect"] is None
    elif effect is None:  # the guard left fewer than two seeds in a group
        assert overfits["verdict"] == "inconclusive" and overfits["effect"] is None, overfits
    else:
        assert overfits["effect"] == pytest.approx(effect, rel=1e-6, abs=1e-12)
        assert overfits["n_seeds"] == n
        low, high = overfits["ci_low"], overfits["ci_high"]
        assert low < effect < high
        margin = overfits["verdict"] == "equivalent"
        expected = "supported" if low > 0 else "contradicted" if high < 0 else "inconclusive"
        assert margin or overfits["verdict"] == expected
        assert (overfits["mde"] is None) == (overfits["verdict"] != "inconclusive")
    # Comparable: the log ratio GRU/LSTM of the test losses (the ratio band's scale: mean
    # log GRU - mean log LSTM) in one of the two data sizes.
    losses = {k: statistics.fmean(math.log(x) for x in v)
              for k, v in reeval_values(client, "test_loss").items()}
    comparable = claims["LSTM and GRU perform comparably"]
    if comparable["verdict"] == "no answer":  # neither cell learned the smoke task anywhere
        assert comparable["effect"] is None
        return
    differences = [losses["gru", s] - losses["lstm", s] for s in ("small", "large")]
    assert min(abs(comparable["effect"] - d) for d in differences) < 1e-9 * (
        1 + max(map(abs, differences))), (comparable, differences)
    assert comparable["ci_low"] < comparable["effect"] < comparable["ci_high"]
    assert comparable["n_seeds"] == min(len(v) for v in gaps.values())


def test_attached_once_per_sweep(report: Path, smoke_sweep: Path, client: MlflowClient) -> None:
    first = runs(client, "report")
    assert len(first) == 1 and first[0].info.status == "FINISHED"
    names = {a.path for a in client.list_artifacts(first[0].info.run_id, "report")}
    assert {"report/report.md", "report/report.html", "report/metrics.json"} <= names
    assert run_report(smoke_sweep).returncode == 0
    again = runs(client, "report")
    assert [r.info.run_id for r in again] == [first[0].info.run_id]


def test_unknown_sweep_id_is_one_line_error(report: Path, smoke_sweep: Path,
                                            client: MlflowClient) -> None:
    before = (report / "report.md").read_text()
    proc = run_report(smoke_sweep, "report.sweep_id=nope")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: report.sweep_id='nope': no study of experiment 'adding'"]
    assert (report / "report.md").read_text() == before
    assert len(runs(client, "report")) == 1

