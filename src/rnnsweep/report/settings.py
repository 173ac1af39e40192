"""The report's statistical settings, read once from `report.*` (conf/report/default.yaml)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rnnsweep.errors import ConfigError

MARGIN_KINDS = ("ratio", "relative_to_baseline", "absolute")
# An error rate of 0 has no ratio: error rates are floored here (0.1 %) before a ratio band.
ERROR_FLOOR = 1e-3


@dataclass(frozen=True)
class Band:
    """What "equivalent" compares: the two cells' values on the compared scale, and the margin
    on that scale (log for a ratio band, so TOST on logs tests the ratio)."""

    a: list[float]
    b: list[float]
    scale: str  # log | raw
    margin: float
    quantity: str  # what the values are: the test metric, or the error rate from an accuracy

    def to_ratio(self, x: float) -> float:
        return math.exp(x) if self.scale == "log" else x


def _choice(rcfg: dict, key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = str(rcfg.get(key) or default)
    if value not in allowed:
        raise ConfigError(f"report.{key}={value!r}: must be one of {', '.join(allowed)}")
    return value


def derived_direction(metric: str) -> str:
    """Accuracies are higher-is-better; every other test metric (a loss) lower-is-better."""
    name = metric.lower()
    return "maximize" if name.endswith(("acc", "accuracy")) else "minimize"


@dataclass(frozen=True)
class Settings:
    alpha: float = 0.05
    test_metric: str = "test_loss"
    direction: str = "minimize"
    # auto: losses on the log scale (ratio of geometric means), accuracies raw
    scale: str = "auto"
    # ratio: equivalent when the ratio of the two cells' losses (error rates, for an
    # accuracy) lies within 1/equivalence_ratio .. equivalence_ratio; holds near zero loss
    equivalence_ratio: float = 1.25
    equivalence_margin: float = 0.1
    margin_kind: str = "ratio"
    # "LSTM overfits more": no difference when within this fraction of the small-data gap
    overfit_margin_fraction: float = 0.25
    df_rule: str = "hsu"
    power: float = 0.8
    # a cell "at the trivial level" when within this fraction of the trivial predictor
    trivial_fraction: float = 0.1
    max_seeds: int = 100
    length_keys: tuple[str, ...] = field(default=("T", "seq_len"))
    # the cells whose claims read as the article wrote them ("GRU trains faster")
    article_pair: tuple[str, str] = ("lstm", "gru")

    @classmethod
    def from_cfg(cls, rcfg: dict) -> Settings:
        metric = str(rcfg.get("test_metric", "test_loss"))
        direction = _choice(rcfg, "test_metric_direction", derived_direction(metric),
                            ("minimize", "maximize"))
        return cls(
            alpha=float(rcfg.get("alpha", 0.05)), test_metric=metric, direction=direction,
            scale=_choice(rcfg, "effect_scale", "auto", ("auto", "log", "raw")),
            equivalence_ratio=_ratio(rcfg),
            equivalence_margin=float(rcfg.get("equivalence_margin", 0.1)),
            margin_kind=_choice(rcfg, "margin_kind", "ratio", MARGIN_KINDS),
            overfit_margin_fraction=_fraction(rcfg, "overfit_margin_fraction", 0.25),
            df_rule=_choice(rcfg, "df_rule", "hsu", ("hsu", "welch")),
            power=float(rcfg.get("power", 0.8)),
            trivial_fraction=float(rcfg.get("trivial_fraction", 0.1)),
            max_seeds=int(rcfg.get("max_seeds_reported", 100)),
            length_keys=tuple(rcfg.get("length_keys", ("T", "seq_len"))),
            article_pair=_pair(rcfg),
        )

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def test_col(self) -> str:
        return f"metrics.{self.test_metric}"

    def effect_scale(self) -> str:
        """The scale of the test metric's comparisons: log only for lower-is-better losses."""
        if self.scale == "auto":
            return "raw" if self.maximize else "auto"  # 'auto' in stats: log if all > 0
        return self.scale

    def band(self, a: Sequence[float], b: Sequence[float], baseline_loss: float | None,
             baseline_acc: float | None) -> Band | str:
        """The equivalence test's data and margin for cells a and b, or why there is none."""
        a, b = [float(x) for x in a], [float(x) for x in b]
        if self.margin_kind != "ratio":  # a raw-scale margin, in the test metric's units
            base = 1.0 if self.margin_kind == "absolute" else \
                baseline_acc if self.maximize else baseline_loss
            if base is None or not base > 0:
                return (f"margin {self.margin_text()} needs metrics.baseline_"
                        f"{'acc' if self.maximize else 'loss'} (not recorded); or set "
                        "report.margin_kind=ratio")
            return Band(a, b, "raw", self.equivalence_margin * base, self.test_metric)
        quantity = self.test_metric
        if self.maximize:  # an accuracy: the band is on the error rate users read
            a, b = ([max(1.0 - x, ERROR_FLOOR) for x in v] for v in (a, b))
            quantity = f"error rate (1 - {self.test_metric}, floored at {ERROR_FLOOR:.1%})"
        if min(a + b, default=0.0) <= 0:
            return (f"a ratio band needs positive {quantity} values; set "
                    "report.margin_kind=absolute")
        return Band(a, b, "log", math.log(self.equivalence_ratio), quantity)

    def margin_text(self) -> str:
        if self.margin_kind == "ratio":
            r = self.equivalence_ratio
            what = "error rates (from the accuracy)" if self.maximize else "losses"
            return f"a ratio of the {what} within 1/{r:g} to {r:g}"
        if self.margin_kind == "absolute":
            return f"±{self.equivalence_margin:g} (absolute)"
        base = "majority-class rate" if self.maximize else "trivial predictor's loss"
        return f"±{self.equivalence_margin:.0%} of the {base}"

    def learned(self, mean: float, baseline_loss: float | None,
                baseline_acc: float | None) -> bool | None:
        """A cell learned the task when its mean beats the trivial predictor by more than
        trivial_fraction (of the loss; of the headroom above the majority rate for an
        accuracy); None when the trivial value is not recorded."""
        if self.maximize:
            base = baseline_acc
            return None if base is None else mean > base + self.trivial_fraction * (1 - base)
        base = baseline_loss
        return None if base is None else mean < (1 - self.trivial_fraction) * base


def _pair(rcfg: dict) -> tuple[str, str]:
    value = list(rcfg.get("article_pair") or ("lstm", "gru"))
    if len(value) != 2 or len(set(value)) != 2:
        raise ConfigError(f"report.article_pair={value!r}: must name two different cells, "
                          "e.g. [lstm, gru]")
    return str(value[0]), str(value[1])


def _fraction(rcfg: dict, key: str, default: float) -> float:
    value = float(rcfg.get(key, default))
    if not 0 <= value < 1:
        raise ConfigError(f"report.{key}={value!r}: must be a fraction in [0, 1)")
    return value


def _ratio(rcfg: dict) -> float:
    value = float(rcfg.get("equivalence_ratio", 1.25))
    if not value > 1:
        raise ConfigError(f"report.equivalence_ratio={value!r}: must be > 1 (a factor, e.g. "
                          "1.25 for losses within 1/1.25 to 1.25 of each other)")
    return value
