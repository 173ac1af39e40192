"""Fitted non-recurrent baselines: known answers, the cells' split and masking, and what the
bottom line, the report's summary and the closing table say about them. In-process, fast."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import TensorDataset

from rnnsweep.data.adding import AddingDataConfig, AddingDataModule
from rnnsweep.data.base import TensorDataModule
from rnnsweep.data.fitted_baselines import (
    best_fitted,
    fitted_baselines,
    fitted_key,
    score,
    sequence_weights,
    step_windows,
    vote_duplicates,
)
from rnnsweep.data.spec import TaskSpec
from rnnsweep.report.bottom_line import bottom_line
from rnnsweep.report.collect import Sweep, condition_label
from rnnsweep.report.evidence import Evidence
from rnnsweep.report.settings import Settings
from rnnsweep.sweep_callbacks import StudyRow, print_summary


class Constructed(TensorDataModule):
    """A task from given splits (x, y, lengths each)."""

    def __init__(self, spec: TaskSpec, splits: tuple) -> None:
        super().__init__(batch_size=8)
        self.spec, self.splits = spec, splits

    def condition(self) -> dict[str, str]:
        return {"task": "constructed", "size": "small"}

    def build(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        return tuple(TensorDataset(*s) for s in self.splits)  # type: ignore[return-value]


def _full(n: int, t: int) -> torch.Tensor:
    return torch.full((n,), t, dtype=torch.long)


def linear_task(seed: int = 0) -> Constructed:
    """y = w . flattened x exactly; the validation targets are shifted by 100, so a baseline
    scored on the validation set instead of the test set could not come out near 0."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(4 * 3, 1)).astype(np.float32)

    def split(n: int, shift: float = 0.0) -> tuple:
        x = rng.normal(size=(n, 4, 3)).astype(np.float32)
        y = x.reshape(n, -1) @ w + shift
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.float32)), _full(n, 4)

    spec = TaskSpec(input_size=3, output_size=1, loss="mse")
    return Constructed(spec, (split(200), split(50, shift=100.0), split(80)))


def cluster_task() -> Constructed:
    """Three classes far apart, each a tight cloud: 1-NN is right on every test sequence."""
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=10.0, size=(3, 5, 2)).astype(np.float32)

    def split(n: int) -> tuple:
        y = np.arange(n) % 3
        x = centres[y] + rng.normal(scale=0.1, size=(n, 5, 2)).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), _full(n, 5)

    spec = TaskSpec(input_size=2, output_size=3, loss="ce")
    return Constructed(spec, (split(60), split(30), split(30)))


def copy_task(t: int = 12) -> Constructed:
    """Per-step multi-label: the target at a step is the previous step's input (a window
    holds it); variable lengths, padding filled with noise and wrong targets."""
    rng = np.random.default_rng(2)

    def split(n: int) -> tuple:
        lengths = rng.integers(3, t + 1, size=n)
        x = (rng.random((n, t, 3)) > 0.5).astype(np.float32)
        y = np.zeros_like(x)
        y[:, 1:] = x[:, :-1]
        real = np.arange(t)[None, :] < lengths[:, None]
        y[~real] = 1 - y[~real]  # never a real step of any sequence
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(lengths)

    spec = TaskSpec(input_size=3, output_size=3, loss="bce", per_step=True,
                    variable_length=True)
    return Constructed(spec, (split(120), split(20), split(40)))


def padded_more(dm: Constructed, extra: int) -> Constructed:
    """The same task with `extra` more padding steps (noise, targets all ones) everywhere."""
    gen = torch.Generator().manual_seed(5)
    splits = []
    for x, y, lengths in dm.splits:
        noise = (torch.rand(len(x), extra, x.shape[2], generator=gen) > 0.5).float()
        splits.append((torch.cat([x, noise], 1), torch.cat([y, torch.ones_like(noise)], 1),
                       lengths))
    return Constructed(dm.spec, tuple(splits))


# -- (a) known answers -----------------------------------------------------------------------
def test_ridge_solves_a_linear_task_the_trivial_predictor_cannot() -> None:
    dm = linear_task()
    out = fitted_baselines(dm)
    _, y_test, _ = dm.test_set.tensors
    trivial_on_test = float(((y_test - dm.train_set.tensors[1].mean()) ** 2).mean())
    assert out[fitted_key("linear", "test_loss")] < 1e-3
    assert out[fitted_key("linear", "test_loss")] < 0.001 * trivial_on_test
    assert out[fitted_key("linear", "test_mse")] == out[fitted_key("linear", "test_loss")]
    # 1-NN cannot interpolate a linear function in 12 dimensions from 200 points.
    assert out[fitted_key("1nn", "test_loss")] > 100 * out[fitted_key("linear", "test_loss")]


def test_one_nn_is_perfect_on_separated_classes_and_gives_no_loss() -> None:
    out = fitted_baselines(cluster_task())
    assert out[fitted_key("1nn", "test_acc")] == 1.0
    assert out[fitted_key("linear", "test_acc")] == 1.0
    assert 0 < out[fitted_key("linear", "test_loss")] < 0.1
    # One-hot probabilities: a 1-NN loss would only measure the smoothing chosen.
    assert fitted_key("1nn", "test_loss") not in out


def test_windowed_models_learn_a_per_step_copy() -> None:
    out = fitted_baselines(copy_task())
    assert out[fitted_key("linear", "test_acc")] == 1.0
    assert out[fitted_key("linear", "test_frame_acc")] == 1.0
    assert out[fitted_key("linear", "test_loss")] < 0.2
    # 1-NN on 8-step windows of noise mostly meets unseen windows: far from perfect, but
    # well above guessing three outputs at once (1/8).
    assert 0.4 < out[fitted_key("1nn", "test_acc")] < 1.0


def test_exact_duplicates_vote_before_the_nearest_neighbour() -> None:
    """anbn's case: the same window followed by b three times and by end once."""
    x = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]], dtype=np.float32)
    y = np.array([[0, 1], [0, 1], [1, 0], [0, 1], [1, 0]], dtype=bool)
    rows, target = vote_duplicates(x, y, "bce")
    assert rows.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert target.tolist() == [[0, 1], [1, 0]]
    rows, target = vote_duplicates(x, np.array([2, 0, 2, 1, 1]), "ce")
    assert target.tolist() == [2, 1]
    rows, target = vote_duplicates(x, np.array([[1.0], [2.0], [3.0], [6.0], [5.0]]), "mse")
    assert target.ravel().tolist() == [3.0, 5.0]


def test_scores_match_the_cells_loss_definitions() -> None:
    """score() against the torch expressions of RecurrentLitModule._loss_and_hits."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(50, 4))
    # bce: from probabilities = sigmoid(logits), summed over outputs, mean over steps
    y = (rng.random((50, 4)) > 0.5).astype(np.float32)
    p = 1 / (1 + np.exp(-logits))
    spec = TaskSpec(input_size=1, output_size=4, loss="bce")
    got = score(spec, y, p, proba=True)
    lt, yt = torch.tensor(logits), torch.tensor(y, dtype=torch.float64)
    want = F.binary_cross_entropy_with_logits(lt, yt, reduction="none").sum(-1).mean()
    assert got["test_loss"] == pytest.approx(float(want), rel=1e-6)
    assert got["test_acc"] == pytest.approx(float(((lt > 0).double() == yt).all(-1)
                                                   .double().mean()))
    # ce: from softmax probabilities
    labels = rng.integers(0, 4, size=50)
    soft = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    spec = TaskSpec(input_size=1, output_size=4, loss="ce")
    got = score(spec, labels, soft, proba=True)
    assert got["test_loss"] == pytest.approx(float(F.cross_entropy(lt, torch.tensor(labels))),
                                             rel=1e-6)
    assert got["test_acc"] == pytest.approx(float((logits.argmax(-1) == labels).mean()))
    # mse: over every output, accuracy within the tolerance on all of them
    target = rng.normal(size=(50, 2))
    spec = TaskSpec(input_size=1, output_size=2, loss="mse", acc_tolerance=0.5)
    got = score(spec, target, logits[:, :2], proba=False)
    assert got["test_loss"] == pytest.approx(float(np.mean((logits[:, :2] - target) ** 2)))
    assert got["test_acc"] == pytest.approx(
        float((np.abs(logits[:, :2] - target) < 0.5).all(-1).mean()))


@dataclass(frozen=True)
class StringWeightedSpec(TaskSpec):
    per_sequence_loss: bool = True  # as anbn's data.loss_weighting=string


def test_a_per_sequence_loss_weighs_every_sequence_the_same() -> None:
    """Steps of a 1-step and a 3-step sequence: the per-step mean weighs the long one 3:1,
    the per-sequence loss 1:1; accuracies are per step either way, as the cells count them."""
    spec = TaskSpec(input_size=1, output_size=1, loss="bce", per_step=True)
    y = np.array([[1.0], [0.0], [0.0], [0.0]])
    p = np.array([[0.5], [0.9], [0.9], [0.9]])  # the long sequence's steps are all wrong
    nll = -np.log(np.array([0.5, 0.1, 0.1, 0.1]))
    plain = score(spec, y, p, proba=True)
    weighted = score(spec, y, p, proba=True, weights=sequence_weights(np.array([1, 3])))
    assert plain["test_loss"] == pytest.approx(nll.mean())
    assert weighted["test_loss"] == pytest.approx((nll[0] + nll[1:].mean()) / 2)
    assert weighted["test_acc"] == plain["test_acc"] == 0.0
    task = copy_task()
    string = Constructed(StringWeightedSpec(input_size=3, output_size=3, loss="bce",
                                            per_step=True, variable_length=True), task.splits)
    a, b = fitted_baselines(task), fitted_baselines(string)
    assert a[fitted_key("linear", "test_acc")] == b[fitted_key("linear", "test_acc")]
    assert a[fitted_key("linear", "test_loss")] != b[fitted_key("linear", "test_loss")]


# -- (b) the cells' own split ----------------------------------------------------------------
def test_the_baseline_is_fitted_on_train_and_scored_on_the_test_rows() -> None:
    dm = AddingDataModule(AddingDataConfig(seq_len=10, n_train_small=60, n_val=30,
                                           n_test=40))
    out = dm.fitted_baselines()  # sets the datamodule up itself
    x_tr, y_tr, _ = (t.numpy() for t in dm.train_set.tensors)
    x_te, y_te, _ = (t.numpy() for t in dm.test_set.tensors)
    assert len(x_tr) == 60 and len(x_te) == 40
    # 1-NN by brute force on exactly those rows: the same test mse.
    a, b = x_te.reshape(40, -1).astype(float), x_tr.reshape(60, -1).astype(float)
    nearest = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).argmin(1)
    assert out[fitted_key("1nn", "test_mse")] == pytest.approx(
        float(np.mean((y_tr[nearest] - y_te) ** 2)), rel=1e-6)
    # The corrupted validation set of the linear task is never what gets scored.
    assert fitted_baselines(linear_task())[fitted_key("linear", "test_loss")] < 1e-3


# -- (c) masking -----------------------------------------------------------------------------
def test_padding_steps_do_not_change_a_per_step_baseline() -> None:
    task = copy_task()
    plain, padded = fitted_baselines(task), fitted_baselines(padded_more(task, 7))
    assert padded.keys() == plain.keys()
    for key, value in plain.items():
        assert padded[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_a_window_holds_the_last_inputs_with_zeros_before_the_start() -> None:
    x = np.arange(1, 13, dtype=np.float32).reshape(1, 6, 2)  # steps (1,2), (3,4), ...
    w = step_windows(x, np.array([4]), window=3)
    assert w.shape == (4, 6)  # real steps only
    assert w[0].tolist() == [0, 0, 0, 0, 1, 2]
    assert w[3].tolist() == [3, 4, 5, 6, 7, 8]


# -- (d) the bottom line, the summary view and the closing table -------------------------------
def make_sweep(studies: dict, baseline: float | None = 0.17,
               parent_metrics: dict | None = None, loss_kind: str | None = None) -> Sweep:
    """studies: {(cell, size): {"test_loss": [...], ...}}; one parent per key (with
    `parent_metrics` logged on it), its current best is trial 7, one finished re-evaluation
    per value. Adapted from tests/test_inference_claims.py."""
    parents, reevals = [], []
    for key, metrics in studies.items():
        cell, size = key[0], key[1]
        pid = "-".join(map(str, key))
        row = {"run_id": pid, "tags.cell": cell, "tags.data_size": size,
               "tags.study_name": pid, "tags.best_trial_number": "7", "tags.sweep_id": "s1",
               "start_time": 0}
        if baseline is not None:
            row["metrics.baseline_loss"] = baseline
        if loss_kind:
            row["tags.loss_kind"] = loss_kind
        row.update({f"metrics.{k}": v for k, v in (parent_metrics or {}).items()})
        parents.append(row)
        n = len(next(iter(metrics.values())))
        for i in range(n):
            r = {"run_id": f"{pid}-r{i}", "tags.mlflow.parentRunId": pid, "tags.cell": cell,
                 "tags.data_size": size, "status": "FINISHED", "tags.state": "COMPLETE",
                 "tags.best_trial_number": "7", "tags.role": "reeval"}
            r.update({f"metrics.{k}": v[i] for k, v in metrics.items()})
            reevals.append(r)
    p, r = pd.DataFrame(parents), pd.DataFrame(reevals)
    for df in (p, r):
        df["condition"] = [condition_label(row, []) for _, row in df.iterrows()]
    return Sweep(experiment="adding", sweep_id="s1", metric="val_loss", direction="minimize",
                 space={}, parents=p, trials=pd.DataFrame(), reevals=r, axes=[])


S = Settings.from_cfg({"alpha": 0.05, "test_metric": "test_loss"})
GRU = [0.050, 0.052, 0.048, 0.051, 0.049]
LSTM = [0.100, 0.104, 0.096, 0.102, 0.098]
NO_SUMMARY = pd.DataFrame(columns=["cell", "condition"])


def _answer(sweep: Sweep, s: Settings = S) -> str:
    return str(bottom_line(Evidence(sweep), s, NO_SUMMARY).iloc[0]["answer"])


def test_bottom_line_says_when_neither_cell_beats_a_fitted_baseline() -> None:
    cells = {("gru", "small"): {"test_loss": GRU}, ("lstm", "small"): {"test_loss": LSTM}}
    worse = _answer(make_sweep(cells, parent_metrics={"fitted_linear_test_loss": 0.03,
                                                      "fitted_1nn_test_loss": 0.04}))
    assert worse.startswith("gru (lower test_loss)")  # the verdict is kept
    assert ("but neither cell beats the fitted linear model (test_loss 0.03 vs best cell "
            "gru 0.05)") in worse
    better = _answer(make_sweep(cells, parent_metrics={"fitted_linear_test_loss": 0.2,
                                                       "fitted_1nn_test_loss": 0.3}))
    assert better == "gru (lower test_loss)"
    # A sweep from before the fitted baselines: no note, nothing invented.
    assert _answer(make_sweep(cells)) == "gru (lower test_loss)"


def test_classification_names_the_1nn_on_accuracy_under_a_loss_metric() -> None:
    """The issue's case: better losses than logistic regression, worse accuracy than 1-NN."""
    cells = {("gru", "small"): {"test_loss": [0.30, 0.31, 0.29],
                                "test_acc": [0.92, 0.918, 0.919]},
             ("lstm", "small"): {"test_loss": [0.35, 0.36, 0.34],
                                 "test_acc": [0.90, 0.905, 0.904]}}
    fitted = {"fitted_linear_test_loss": 0.4, "fitted_linear_test_acc": 0.946,
              "fitted_1nn_test_acc": 0.969}
    answer = _answer(make_sweep(cells, baseline=2.3, parent_metrics=fitted, loss_kind="ce"))
    assert "neither cell beats the fitted 1-NN (test_acc 0.969 vs best cell gru 0.919)" \
        in answer
    assert "linear model (test_loss" not in answer  # the cells do beat its loss
    # On test_acc itself: one check, against the best baseline on it (here the linear).
    on_acc = Settings.from_cfg({"alpha": 0.05, "test_metric": "test_acc"})
    sweep = make_sweep(cells, baseline=2.3, parent_metrics={**fitted,
                                                            "fitted_1nn_test_acc": 0.9},
                       loss_kind="ce")
    answer = _answer(sweep, on_acc)
    assert answer.startswith("gru (higher test_acc)")
    assert answer.count("beats") == 1 and "linear model (test_acc 0.946 vs best cell gru " \
        "0.919)" in answer
    sweep = make_sweep(cells, baseline=2.3, parent_metrics={"fitted_1nn_test_acc": 0.9},
                       loss_kind="ce")
    assert "beats" not in _answer(sweep, on_acc)


def test_best_fitted_follows_the_metrics_direction() -> None:
    metrics = {"fitted_linear_test_loss": 0.2, "fitted_1nn_test_loss": 0.1,
               "fitted_linear_test_acc": 0.9, "fitted_1nn_test_acc": float("nan")}
    assert best_fitted(metrics, "test_loss", maximize=False) == ("1nn", 0.1)
    assert best_fitted(metrics, "test_acc", maximize=True) == ("linear", 0.9)
    assert best_fitted({}, "test_loss", maximize=False) is None


def test_the_closing_table_names_the_best_fitted_baseline_per_condition() -> None:
    common = dict(status="FINISHED", best_params={}, n_complete=3, loss_kind="ce",
                  trivial_loss=2.3, majority_acc=0.1, reeval_n=3, fitted=("1nn", 0.969))
    rows = [StudyRow("file", "small", "gru", "a", best_value=0.3, reeval_test=0.919,
                     **common),
            StudyRow("file", "small", "lstm", "b", best_value=0.4, reeval_test=0.903,
                     **common),
            StudyRow("file", "large", "gru", "c", best_value=0.1, reeval_test=0.99,
                     **common)]
    buffer = io.StringIO()
    print_summary(rows, "val_loss", "minimize", Console(file=buffer, width=160))
    text = " ".join(buffer.getvalue().split())
    assert "file small 1-NN test acc 0.969, no cell beats it" in text
    assert "file large 1-NN test acc 0.969, a cell beats it" in text
    # A sweep from before the fitted baselines: no line at all.
    for r in rows:
        r.fitted = None
    buffer = io.StringIO()
    print_summary(rows, "val_loss", "minimize", Console(file=buffer, width=160))
    assert "fitted" not in buffer.getvalue()


def test_the_report_summary_shows_the_fitted_baselines_beside_the_trivial_one() -> None:
    from rnnsweep.report.build import _summary_view
    from rnnsweep.report.tables import summary

    sweep = make_sweep({("gru", "small"): {"test_loss": GRU, "test_acc": [0.5] * 5},
                        ("lstm", "small"): {"test_loss": LSTM, "test_acc": [0.4] * 5}},
                       parent_metrics={"fitted_linear_test_loss": 0.03,
                                       "fitted_1nn_test_loss": 0.04,
                                       "fitted_linear_test_acc": 0.9})
    view = _summary_view(summary(sweep, "test_loss"), "val_loss", "test_loss")
    assert view["trivial predictor loss (validation set)"].tolist() == ["0.17", "0.17"]
    assert view["fitted baselines, test_loss (test set)"].iloc[0] == \
        "linear model 0.03, 1-NN 0.04"
    assert view["fitted baselines, test_acc (test set)"].iloc[0] == "linear model 0.9"
    # A sweep recorded before the fitted baselines: no empty column.
    old = make_sweep({("gru", "small"): {"test_loss": GRU}, ("lstm", "small"): {"test_loss": LSTM}})
    assert not any(c.startswith("fitted") for c in _summary_view(
        summary(old, "test_loss"), "val_loss", "test_loss").columns)
