"""Sequential re-evaluation seeds: after a sweep's studies, add seeds in rounds while the
cells' comparison is undecided, up to `search.reeval_max_seeds` and within the sweep's time
budget `search.seed_rounds_minutes` (a round starts only when its estimate fits).

What is compared, as the report compares it:
- per experiment and data condition, every pair of cells on the report's test metric over the
  re-evaluation seeds of each study's current best configuration (the "comparable" claim, on
  its scale), paired by seed where both cells have the seeds (seed k of every cell draws the
  same data). Decided when the test finds a difference, or TOST puts the interval within the
  report's equivalence band (by default a ratio of the losses within 1/equivalence_ratio ..
  equivalence_ratio);
- per pair of cells measured at both data sizes, the overfitting interaction (the eval-mode
  gap's cell difference on small data minus that on large data, paired by seed at each size):
  decided when its interval excludes 0 or lies within the report's overfitting margin; while
  undecided, all four studies get seeds.
Each is tested at alpha / looks / 6: the strictest Holm step among a pair's six claims, so a
comparison stops getting seeds only when the report will decide it whatever the other claims
do. The stopping rule keeps the error rate by alpha spending (rnnsweep.report.sequential:
Bonferroni over the planned looks `reeval_seeds`, `+ reeval_seed_step`, ...
`reeval_max_seeds`); the report tests its claims at alpha / looks. A round runs as many
studies at a time as the sweep's launcher had workers (joblib: one per core), each study's
seeds one after another.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from rnnsweep.console import quiet_third_party
from rnnsweep.report.sequential import SeedPlan, decide, look_index, seed_plan
from rnnsweep.report.settings import Settings
from rnnsweep.report.stats import contrast, tost_p
from rnnsweep.search.repeats import REPEAT_TAG, search_group
from rnnsweep.threads import available_cores, launcher_jobs, local_workers
from rnnsweep.tracking import tag_filter

log = logging.getLogger(__name__)
# The report tests six claims per pair of cells with Holm: a comparison the rounds call
# decided at alpha / looks / 6 stays decided at any Holm step.
CLAIMS_PER_PAIR = 6
# The eval-mode gap at the best validation, which the overfitting claim compares.
GAP_METRIC = "gap_at_best"
# (client, parent run, sweep config, seeds): one study's best re-evaluated up to that many seeds.
AddSeeds = Callable[[Any, Any, DictConfig, int], None]


def _condition(tags: dict[str, str]) -> tuple:
    return (tags.get("data_size"), *sorted((k, v) for k, v in tags.items()
                                           if k.startswith("data.")))


def _reeval_runs(client, parent) -> list:  # noqa: ANN001 (MLflow objects)
    """The finished re-evaluation runs of the study's current best configuration."""
    best = parent.data.tags.get("best_trial_number")
    return client.search_runs(
        [parent.info.experiment_id],
        tag_filter({"mlflow.parentRunId": parent.info.run_id, "role": "reeval",
                    "best_trial_number": best}, status="FINISHED")[0],
        max_results=1000,
    )


def _keyed(client, parents: list, metric: str) -> dict[tuple[str, str], float]:  # noqa: ANN001
    """One side of a comparison: the metric of each finished seed of its studies (the
    repeats of one search), keyed by (repeat, seed); a run without a seed tag gets a key of
    its own, so it never pairs."""
    out: dict[tuple[str, str], float] = {}
    for p in parents:
        repeat = p.data.tags.get(REPEAT_TAG, "0")
        for i, r in enumerate(_reeval_runs(client, p)):
            if metric in r.data.metrics:
                tags = getattr(r.data, "tags", {}) or {}
                seed = tags.get("reeval_seed", f"unseeded-{p.info.run_id}-{i}")
                out[(repeat, seed)] = float(r.data.metrics[metric])
    return out


def _learned_only(client, parents: list, settings: Settings,  # noqa: ANN001
                  losses: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """The gaps of the seeds that learned (performance_claims.learned_seeds: a seed near the
    trivial loss has a gap that says nothing about overfitting); `losses`: _keyed's test
    metric of the same parents."""
    gaps = _keyed(client, parents, GAP_METRIC)
    metrics = parents[0].data.metrics if parents else {}
    base, acc = metrics.get("baseline_loss"), metrics.get("baseline_acc")
    return {k: v for k, v in gaps.items()
            if k not in losses or settings.learned(losses[k], base, acc) is not False}


def _stayed_trivial(values: dict[tuple[str, str], float], metrics: dict,
                    settings: Settings) -> bool:
    """Whether one side's mean over all its seeds stayed within trivial_fraction of the
    trivial predictor (performance_claims.learned): the claims leave such a condition out
    (performance_claims.unlearned_note), so seeds there decide nothing."""
    return bool(values) and settings.learned(
        float(np.mean(list(values.values()))), metrics.get("baseline_loss"),
        metrics.get("baseline_acc")) is False


def _matched(a: dict, b: dict) -> tuple[list[float], list[float], bool]:
    """Both sides on their common seeds (paired) when at least two are common; else every
    value of each side (unpaired)."""
    common = sorted(set(a) & set(b))
    if len(common) >= 2:
        return [a[k] for k in common], [b[k] for k in common], True
    return list(a.values()), list(b.values()), False


def round_seconds(client, parents: list, look: int) -> float:  # noqa: ANN001
    """Estimated compute of a round bringing `parents` to `look` seeds each: per study, the
    seeds it lacks times the mean wall time of its finished re-evaluation runs (one study's
    seeds run one after another; run_seed_rounds divides by the studies run at a time). A
    study with none finished counts 0."""
    total = 0.0
    for parent in parents:
        runs = _reeval_runs(client, parent)
        spans = [(r.info.end_time - r.info.start_time) / 1000 for r in runs
                 if r.info.end_time is not None and r.info.start_time is not None]
        if spans:
            total += max(0, look - len(runs)) * sum(spans) / len(spans)
    return total


def _per_repeats(plan: SeedPlan, repeats: int) -> SeedPlan:
    """The plan in seeds per cell when each cell pools `repeats` independent searches
    (search.repeats), each re-evaluated with the plan's seeds per study."""
    return plan if repeats <= 1 else SeedPlan(tuple(repeats * n for n in plan.looks),
                                              plan.alpha)


def pending_studies(client, parents: list, plan: SeedPlan, config: DictConfig) -> set[str]:  # noqa: ANN001
    """Parent run ids of studies in an undecided comparison whose plan still has a look left.

    One side of a pair is one search: its studies are the independent repeats of
    search.repeats (one study without), pooled as the report pools them; each of them gets
    the look's seeds."""
    settings = Settings.from_cfg(OmegaConf.to_container(config.report, resolve=False))  # type: ignore[arg-type]
    groups: dict[tuple, dict[tuple[str, str], list]] = {}
    for p in parents:
        tags = p.data.tags
        searches = groups.setdefault((p.info.experiment_id, _condition(tags)), {})
        name = tags.get("study_name", p.info.run_id)
        key = (tags["cell"], search_group(name, tags.get(REPEAT_TAG, "0")))
        searches.setdefault(key, []).append(p)
    pending: set[str] = set()
    for searches in groups.values():
        for a, b in combinations(sorted(searches), 2):
            sides = [_keyed(client, searches[c], settings.test_metric) for c in (a, b)]
            metrics = searches[a][0].data.metrics
            if any(_stayed_trivial(side, metrics, settings) for side in sides):
                continue
            va, vb, paired = _matched(*sides)
            # The report's own equivalence band (a ratio by default), so a pair the report
            # will call equivalent stops getting seeds.
            band = settings.band(va, vb, metrics.get("baseline_loss"),
                                 metrics.get("baseline_acc"))
            scaled = _per_repeats(plan, min(len(searches[a]), len(searches[b])))
            d = (decide(va, vb, scaled, scale="raw", paired=paired,
                        level_divisor=CLAIMS_PER_PAIR) if isinstance(band, str) else
                 decide(band.a, band.b, scaled, scale=band.scale, margin=band.margin,
                        paired=paired, level_divisor=CLAIMS_PER_PAIR))
            if not d.stop:
                pending.update(p.info.run_id for p in searches[a] + searches[b])
    pending.update(_overfitting_pending(client, groups, plan, settings))
    return pending


def _overfitting_pending(client, groups: dict, plan: SeedPlan, settings: Settings) -> set[str]:  # noqa: ANN001
    """Studies of an undecided overfitting interaction (report.performance_claims.
    overfits_claim, two-size form): per pair of cells measured at a small and a large
    condition that agree on every other data key, the gap's cell difference on matched
    seeds at each size (unpaired where seeds do not match), on the seeds where both cells
    learned; pending until decided or the four studies' seeds reach the plan's last look."""
    sizes: dict[tuple, dict[str, dict[str, list]]] = {}
    for (experiment, cond), searches in groups.items():
        rest = tuple(kv for kv in cond[1:] if kv[0] != "data.n")  # n differs by size
        by_cell = sizes.setdefault((experiment, rest), {}).setdefault(cond[0], {})
        for (cell, _), studies in searches.items():
            by_cell.setdefault(cell, []).extend(studies)
    pending: set[str] = set()
    level = plan.alpha_per_look / CLAIMS_PER_PAIR
    for by_size in sizes.values():
        if not {"small", "large"} <= set(by_size):
            continue
        small, large = by_size["small"], by_size["large"]
        for a, b in combinations(sorted(set(small) & set(large)), 2):
            four = [studies[c] for studies in (small, large) for c in (a, b)]
            losses = [_keyed(client, ps, settings.test_metric) for ps in four]
            # The report leaves out a size pair where a cell did not learn (on its mean).
            if any(_stayed_trivial(v, ps[0].data.metrics, settings)
                   for v, ps in zip(losses, four, strict=True)):
                continue
            # Progress counts every seed run (pooled over the searches, as the report pools
            # them); the test uses the seeds that learned, which may be fewer than a look:
            # then more seeds may bring learned ones, so the studies stay pending.
            scaled = _per_repeats(plan, min(len(ps) for ps in four))
            k = look_index(scaled, min(len(v) for v in losses))
            if k >= len(scaled.looks):
                continue
            if k == 0:  # the first look not reached yet
                pending.update(p.info.run_id for ps in four for p in ps)
                continue
            learned = [_learned_only(client, ps, settings, v)
                       for ps, v in zip(four, losses, strict=True)]
            sides = [_matched(*learned[:2]), _matched(*learned[2:])]  # small, large
            used = scaled.looks[k - 1]
            if all(paired for *_, paired in sides):
                groups_, weights = [np.subtract(va[:used], vb[:used]) for va, vb, _ in sides], \
                    [1.0, -1.0]
            else:
                groups_ = [np.asarray(v[:used]) for va, vb, _ in sides for v in (va, vb)]
                weights = [1.0, -1.0, -1.0, 1.0]
            c = contrast(groups_, weights, settings.df_rule)
            if c is None:  # fewer than two learned seeds somewhere: not decidable yet
                pending.update(p.info.run_id for ps in four for p in ps)
                continue
            va, vb, _ = sides[0]
            margin = settings.overfit_margin_fraction * float(
                np.mean([abs(np.mean(va)), abs(np.mean(vb))]))
            decided = c.p_value() < level or (margin > 0 and tost_p(c, margin) < level)
            if not decided:
                pending.update(p.info.run_id for ps in four for p in ps)
    return pending


def run_seed_rounds(config: DictConfig, add_seeds: AddSeeds,
                    sweep_started: float | None = None) -> int:
    """Add seeds look by look until every pair is decided, the plan ends, or the next round
    would end past search.seed_rounds_minutes after `sweep_started` (time.time(); None: no
    limit); returns the number of rounds run. Stopping at any look keeps the plan's error
    rate: each look is tested at alpha / planned looks whether or not later looks happen.
    add_seeds re-evaluates one study: rnnsweep.job.add_seeds, handed in because assembling a
    job builds on this package, not the other way round."""
    from mlflow.tracking import MlflowClient

    from rnnsweep.tracking import tracking_uri

    plan = seed_plan(config.search, float(config.report.alpha))
    if plan is None or not config.search.study:
        return 0
    # Trainings run here or in fresh loky workers, where no job quieted Lightning's banners.
    quiet_third_party(in_study=True)
    minutes = OmegaConf.select(config, "search.seed_rounds_minutes", default=None)
    deadline = None if minutes is None or sweep_started is None else (
        sweep_started + 60 * float(minutes))
    client = MlflowClient(tracking_uri=tracking_uri(config.tracking))
    ids = [e.experiment_id for e in client.search_experiments()]
    # the launcher's workers (joblib: one per core); the callback's config has its node
    cores = available_cores()
    workers = launcher_jobs(OmegaConf.select(config, "hydra.launcher"), cores) \
        or local_workers(cores)
    rounds = 0
    for look in plan.looks[1:]:
        parents = client.search_runs(
            ids, tag_filter({"sweep_id": config.tracking.sweep_id, "role": "study"})[0],
            max_results=10000)
        pending = pending_studies(client, parents, plan, config)
        if not pending:
            break
        todo = [p for p in parents if p.info.run_id in pending]
        if deadline is not None:
            estimate = round_seconds(client, todo, look) / min(workers, len(todo))
            if time.time() + estimate > deadline:
                log.warning("undecided cell comparisons left undecided: a round giving %d "
                            "studies %d re-evaluation seeds (about %.0f s) would end past "
                            "search.seed_rounds_minutes=%s after the sweep's start", len(todo),
                            look, estimate, minutes)
                break
        rounds += 1
        log.info("undecided cell comparisons: %d studies get %d re-evaluation seeds "
                 "(search.reeval_max_seeds=%d, %d at a time)", len(pending), look,
                 plan.looks[-1], min(workers, len(todo)))
        if workers > 1 and len(todo) > 1:
            _parallel_round(todo, config, look, workers, add_seeds)
        else:
            for parent in todo:
                add_seeds(client, parent, config, look)
    return rounds


def _parallel_round(todo: list, config: DictConfig, look: int, workers: int,
                    add_seeds: AddSeeds) -> None:
    """One round, a study per worker at a time, in the sweep's own joblib (loky) workers
    when they are still alive (they have torch and Lightning imported): the studies are
    independent, and one process would leave the other cores idle."""
    from joblib import Parallel, delayed

    plain = OmegaConf.to_container(
        OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]), resolve=True)
    assert isinstance(plain, dict)
    Parallel(n_jobs=min(workers, len(todo)), backend="loky")(
        delayed(_add_seeds_in_worker)(p.info.run_id, plain, look, workers, add_seeds)
        for p in todo)


def _add_seeds_in_worker(run_id: str, plain: dict, look: int, workers: int,
                         add_seeds: AddSeeds) -> None:
    """add_seeds in a worker process, as a launcher's job runs there: its share of the
    threads, signals routed to Interrupted while it works (a stopped sweep closes its runs),
    and idle again afterwards."""
    from mlflow.tracking import MlflowClient

    from rnnsweep.signals import end_of_job_in_worker, install_handlers, job_started_in_worker
    from rnnsweep.threads import LOCAL_WORKERS_ENV
    from rnnsweep.tracking import tracking_uri

    os.environ[LOCAL_WORKERS_ENV] = str(workers)  # threads: the cores // workers
    quiet_third_party(in_study=True)
    job_started_in_worker()
    install_handlers()
    try:
        config = OmegaConf.create(plain)
        client = MlflowClient(tracking_uri=tracking_uri(config.tracking))
        add_seeds(client, client.get_run(run_id), config, look)
    finally:
        end_of_job_in_worker()
