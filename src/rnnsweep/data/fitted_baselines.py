"""Fitted non-recurrent baselines: what a newcomer would try before a recurrent cell.

Each is fitted on the cells' training set and scored on their test set with the cells' own
definitions (lit_module.RecurrentLitModule): mse over all outputs; cross-entropy from the
predicted probabilities (clipped to [1e-6, 1]); BCE summed over outputs and averaged over
steps (or over sequences, where the task's spec sets per_sequence_loss); accuracy as the
cells count it; per-step tasks scored on real (unpadded) steps only.

- Sequence-level tasks (one target per sequence): the flattened input with its padding
  zeroed, plus the length as a column where lengths vary.
- Per-step tasks: the current input and the previous WINDOW - 1 ones (zeros before the
  start), one row per real step.
- `linear`, on standardised features: ridge regression with its penalty chosen by
  leave-one-out on the training set (mse); multinomial logistic regression (ce); one
  logistic regression per output (bce, fitted jointly, at most BCE_MAX_ITER L-BFGS steps).
  Logistic penalties are sklearn's default C=1.
- `1nn`: 1-nearest-neighbour on the raw features (no length column: the padding zeros carry
  it, a raw length would outweigh them); exact duplicates in training vote (majority
  target, mean for mse); at most KNN_MAX_TRAIN distinct training rows (a seeded draw when
  there are more). Its probabilities are one-hot, so for ce and bce only its accuracies
  are reported: a loss would measure an arbitrary smoothing, not the model.

Deterministic (fixed seeds), no torch training. Metric names: `fitted_<model>_<test
metric>` (fitted_linear_test_loss, fitted_1nn_test_acc, ...): the suffix is the cells' own
test metric, so a report compares any of them key for key.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from torch.utils.data import TensorDataset

    from rnnsweep.data.spec import TaskSpec


class SplitTask(Protocol):
    """What fitted_baselines reads of a data module (any TensorDataModule): its spec and,
    after setup(), its training and test sets of (x, y, lengths)."""

    spec: TaskSpec
    train_set: TensorDataset | None
    test_set: TensorDataset | None

    def setup(self, stage: str | None = None) -> None: ...

PREFIX = "fitted_"
MODELS = ("linear", "1nn")
LABELS = {"linear": "linear model", "1nn": "1-NN"}
# Every test metric a cell may log (lit_module.on_test_epoch_end): the baselines give each.
TEST_METRICS = ("test_loss", "test_acc", "test_mse", "test_frame_acc")
WINDOW = 8
KNN_MAX_TRAIN = 10_000
BCE_MAX_ITER = 50
RIDGE_ALPHAS = tuple(10.0 ** np.arange(-3, 4))
SEED = 0
CLIP = 1e-6


def fitted_key(model: str, metric: str) -> str:
    """The parent-run metric of one baseline on one test metric: fitted_1nn_test_acc."""
    return f"{PREFIX}{model}_{metric}"


def fitted_keys() -> list[str]:
    return [fitted_key(m, t) for m in MODELS for t in TEST_METRICS]


def best_fitted(metrics: Mapping[str, object], metric: str,
                maximize: bool) -> tuple[str, float] | None:
    """(model, value) of the best recorded baseline on `metric`, or None when none is."""
    found = []
    for model in MODELS:
        v = metrics.get(fitted_key(model, metric))
        try:
            v = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if np.isfinite(v):
            found.append((model, v))
    if not found:
        return None
    return (max if maximize else min)(found, key=lambda lv: lv[1])


# -- features ------------------------------------------------------------------------------
def _real(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(N, T) True on real steps."""
    return np.arange(x.shape[1])[None, :] < lengths[:, None]


def sequence_features(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(N, T * F) flattened input with its padding zeroed: only real steps inform it."""
    return (x * _real(x, lengths)[..., None]).reshape(len(x), -1)


def step_windows(x: np.ndarray, lengths: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """(real steps, window * F): each real step's input and the window - 1 before it, zeros
    before the start, in the order the cells' mask selects steps (sequence, then step).
    Windows look backwards only, so padding after a sequence never enters its features."""
    n, t, f = x.shape
    padded = np.zeros((n, t + window - 1, f), dtype=x.dtype)
    padded[:, window - 1:] = x
    # (N, T, F, window) views; oldest step first after the transpose.
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=1)
    mask = _real(x, lengths)
    return views[mask].transpose(0, 2, 1).reshape(int(mask.sum()), window * f)


def _split(ds: object, per_step: bool,
           with_length: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(linear features, 1-NN features, targets) of one split."""
    x, y, lengths = (t.numpy() for t in ds.tensors)  # type: ignore[attr-defined]
    x = x.astype(np.float32, copy=False)
    if per_step:
        w = step_windows(x, lengths)
        return w, w, y[_real(x, lengths)]
    flat = sequence_features(x, lengths)
    with_len = np.hstack([flat, lengths[:, None].astype(flat.dtype)]) if with_length else flat
    return with_len, flat, y


def sequence_weights(lengths: np.ndarray) -> np.ndarray:
    """Per real step (in step_windows' order) 1 / (sequences x its length): the weights of a
    per-step loss in which every sequence counts the same (TaskSpec per_sequence_loss,
    as losses.sequence_weights)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.repeat(1.0 / (len(lengths) * lengths), lengths)


def _varying(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Only the columns that vary in training (the chorales' 31 silent keys drop out): a
    constant column adds nothing to a linear fit and the same distance to every training
    row, so 1-NN's answer is unchanged; both get cheaper."""
    keep = train.max(0) != train.min(0)
    keep[0] |= not keep.any()  # nothing varies: one column, so the models still fit
    return train[:, keep], test[:, keep]


# -- one class per loss kind (rnnsweep.losses names them): scoring as
# RecurrentLitModule._loss_and_hits does, the linear model, 1-NN and its duplicate vote ------
class _Regression:
    """mse: predictions are values; ridge regression; 1-NN averages duplicates' targets."""

    linear_gives_probabilities = False

    def score(self, spec: TaskSpec, y: np.ndarray, pred: np.ndarray, proba: bool,
              reduce: Callable[[np.ndarray], float]) -> dict[str, float]:
        y = y.astype(np.float64)
        pred = pred.reshape(y.shape)
        sq = (pred - y) ** 2
        return {"test_loss": reduce(sq.reshape(len(y), -1).mean(-1)),
                "test_mse": float(sq.mean()),
                "test_acc": float((np.abs(pred - y) < spec.acc_tolerance).all(-1).mean())}

    def linear(self, spec: TaskSpec, x: np.ndarray, y: np.ndarray,
               x_test: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # Ridge's penalty by leave-one-out on the training set alone (efficient GCV): with
        # more features than a small training set supports, a fixed penalty overfits.
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
        return model.fit(x, y).predict(x_test).reshape(len(x_test), -1)

    def vote(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, inverse = _distinct(x)
        return rows, _mean_by(inverse, len(rows), y)

    def nearest(self, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        from sklearn.neighbors import KNeighborsRegressor

        return KNeighborsRegressor(n_neighbors=1).fit(x, y).predict(x_test)


class _Classes:
    """ce: predictions are class probabilities (or indices); multinomial logistic
    regression; 1-NN takes duplicates' majority class (a tie: the lower index)."""

    linear_gives_probabilities = True

    def score(self, spec: TaskSpec, y: np.ndarray, pred: np.ndarray, proba: bool,
              reduce: Callable[[np.ndarray], float]) -> dict[str, float]:
        out: dict[str, float] = {}
        labels = pred.argmax(-1) if proba else pred
        if proba:
            p = np.clip(pred[np.arange(len(y)), y], CLIP, 1.0)
            out["test_loss"] = reduce(-np.log(p))
        out["test_acc"] = float((labels == y).mean())
        return out

    def linear(self, spec: TaskSpec, x: np.ndarray, y: np.ndarray,
               x_test: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        proba = np.zeros((len(x_test), spec.output_size))
        classes = np.unique(y)
        if len(classes) < 2:  # one class in training: it is every prediction
            proba[:, classes] = 1.0
            return proba
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        proba[:, classes] = model.fit(x, y).predict_proba(x_test)
        return proba

    def vote(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, inverse = _distinct(x)
        counts = np.zeros((len(rows), int(y.max()) + 1))
        np.add.at(counts, (inverse, y), 1)
        return rows, counts.argmax(1)

    def nearest(self, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=1).fit(x, y).predict(x_test)


class _MultiLabel:
    """bce: predictions are output probabilities (or 0/1); one logistic regression per
    output; 1-NN takes duplicates' majority per output."""

    linear_gives_probabilities = True

    def score(self, spec: TaskSpec, y: np.ndarray, pred: np.ndarray, proba: bool,
              reduce: Callable[[np.ndarray], float]) -> dict[str, float]:
        out: dict[str, float] = {}
        hard = pred > 0.5 if proba else pred.astype(bool)
        truth = y > 0.5
        if proba:
            p = np.clip(pred, CLIP, 1 - CLIP)
            nll = -(truth * np.log(p) + (~truth) * np.log(1 - p))
            out["test_loss"] = reduce(nll.sum(-1))
        out["test_acc"] = float((hard == truth).all(-1).mean())
        tp, err = (hard & truth).sum(), (hard ^ truth).sum()
        # No note predicted and none sounding: every frame right (lit_module._frame_acc).
        out["test_frame_acc"] = float(tp / (tp + err)) if tp + err else 1.0
        return out

    def linear(self, spec: TaskSpec, x: np.ndarray, y: np.ndarray,
               x_test: np.ndarray) -> np.ndarray:
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # One logistic regression per output (the L2 penalty of sklearn's default C=1),
        # fitted jointly as one linear layer with sigmoid outputs (an MLP without hidden
        # layers): one L-BFGS run for all outputs, capped at BCE_MAX_ITER steps, which keeps
        # the chorales' fit near 1.5 s (small) and 5.5 s (large) on one core. An output
        # constant in training keeps its rate.
        proba = np.zeros((len(x_test), spec.output_size))
        truth = y > 0.5
        rate = truth.mean(0)
        live = (rate > 0) & (rate < 1)
        proba[:] = rate
        if live.any():
            target = truth[:, live].astype(np.int8)
            target = target.ravel() if target.shape[1] == 1 else target
            model = make_pipeline(
                StandardScaler(),
                MLPClassifier(hidden_layer_sizes=(), solver="lbfgs", alpha=1.0,
                              max_iter=BCE_MAX_ITER, random_state=SEED))
            p = model.fit(x, target).predict_proba(x_test)
            proba[:, live] = p[:, 1:] if target.ndim == 1 else p
        return proba

    def vote(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, inverse = _distinct(x)
        return rows, (_mean_by(inverse, len(rows), y > 0.5) > 0.5).astype(np.int8)

    def nearest(self, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        from sklearn.neighbors import KNeighborsClassifier

        single = y.shape[1] == 1  # one output: sklearn wants it as a 1-d target
        pred = KNeighborsClassifier(n_neighbors=1).fit(x, y.ravel() if single else y)
        return pred.predict(x_test).reshape(len(x_test), -1)


# The numpy side of each loss kind, by the name TaskSpec.loss carries.
KINDS = {"mse": _Regression(), "ce": _Classes(), "bce": _MultiLabel()}


def _distinct(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows in first-seen order, and each row's index among them."""
    first: dict[bytes, int] = {}
    inverse = np.array([first.setdefault(r.tobytes(), len(first))
                        for r in np.ascontiguousarray(x)], dtype=np.int64)
    return x[np.unique(inverse, return_index=True)[1]], inverse


def _mean_by(inverse: np.ndarray, n: int, y: np.ndarray) -> np.ndarray:
    sums = np.zeros((n, *y.shape[1:]))
    np.add.at(sums, inverse, y)
    return sums / np.bincount(inverse).reshape(-1, *[1] * (y.ndim - 1))


def score(spec: TaskSpec, y: np.ndarray, pred: np.ndarray, proba: bool,
          weights: np.ndarray | None = None) -> dict[str, float]:
    """Test metrics of predictions `pred` for targets `y` (values, probabilities when
    `proba`, else class indices or 0/1 outputs). Losses only from values or probabilities;
    `weights` (summing to 1) weigh the loss's items, as the cells' per-sequence loss does;
    accuracies stay per item, as the cells count them."""

    def reduce(per_item: np.ndarray) -> float:
        return float(per_item.mean() if weights is None else (per_item * weights).sum())

    return KINDS[spec.loss].score(spec, y, pred, proba, reduce)


def vote_duplicates(x: np.ndarray, y: np.ndarray, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """One row per distinct input (first-seen order) with its duplicates' majority target
    (mean for mse; per output for bce).

    1-NN among exact duplicates with different targets otherwise picks one arbitrarily:
    on anbn every run of 8 b's is followed by b except at the end, and a tie broken
    towards the rare case made the 1-NN wrong at almost every step."""
    return KINDS[loss].vote(x, y)


def _linear(spec: TaskSpec, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Predicted values (mse) or probabilities (ce, bce) of the linear model."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # A fit stopped at max_iter is still a fitted linear model: a slightly pessimistic
        # reference, not an error the user could act on.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KINDS[spec.loss].linear(spec, x, y, x_test)


def _nearest(spec: TaskSpec, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """1-NN predictions: values (mse), class indices (ce) or 0/1 outputs (bce)."""
    x, y = vote_duplicates(x, y, spec.loss)
    if len(x) > KNN_MAX_TRAIN:
        rows = np.sort(np.random.default_rng(SEED).choice(len(x), KNN_MAX_TRAIN, replace=False))
        x, y = x[rows], y[rows]
    return KINDS[spec.loss].nearest(x, y, x_test)


def fitted_baselines(dm: SplitTask) -> dict[str, float]:
    """fitted_<model>_<test metric> for `linear` and `1nn` on the datamodule's own split:
    fitted on train_set, scored on test_set (see the module docstring)."""
    dm.setup()
    spec = dm.spec
    assert dm.train_set is not None and dm.test_set is not None
    with_length = spec.variable_length and not spec.per_step
    lin_tr, nn_tr, y_tr = _split(dm.train_set, spec.per_step, with_length)
    lin_te, nn_te, y_te = _split(dm.test_set, spec.per_step, with_length)
    lin_tr, lin_te = _varying(lin_tr, lin_te)
    nn_tr, nn_te = _varying(nn_tr, nn_te)
    # Where the cells weigh every sequence the same (anbn's data.loss_weighting=string).
    weights = (sequence_weights(dm.test_set.tensors[2].numpy())
               if spec.per_step and getattr(spec, "per_sequence_loss", False) else None)
    out: dict[str, float] = {}
    linear = _linear(spec, lin_tr, y_tr, lin_te)
    probabilities = KINDS[spec.loss].linear_gives_probabilities
    for metric, v in score(spec, y_te, linear, probabilities, weights).items():
        out[fitted_key("linear", metric)] = v
    nearest = _nearest(spec, nn_tr, y_tr, nn_te)
    for metric, v in score(spec, y_te, nearest, False, weights).items():
        out[fitted_key("1nn", metric)] = v
    return out
