"""The report's statistical settings, read once from `report.*` (conf/report/default.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rnnsweep.errors import ConfigError

MARGIN_KINDS = ("relative_to_baseline", "absolute")


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
    equivalence_margin: float = 0.1
    margin_kind: str = "relative_to_baseline"
    df_rule: str = "hsu"
    power: float = 0.8
    # a cell "at the trivial level" when within this fraction of the trivial predictor
    trivial_fraction: float = 0.1
    max_seeds: int = 100
    length_keys: tuple[str, ...] = field(default=("T", "seq_len"))

    @classmethod
    def from_cfg(cls, rcfg: dict) -> Settings:
        metric = str(rcfg.get("test_metric", "test_loss"))
        direction = _choice(rcfg, "test_metric_direction", derived_direction(metric),
                            ("minimize", "maximize"))
        return cls(
            alpha=float(rcfg.get("alpha", 0.05)), test_metric=metric, direction=direction,
            scale=_choice(rcfg, "effect_scale", "auto", ("auto", "log", "raw")),
            equivalence_margin=float(rcfg.get("equivalence_margin", 0.1)),
            margin_kind=_choice(rcfg, "margin_kind", "relative_to_baseline", MARGIN_KINDS),
            df_rule=_choice(rcfg, "df_rule", "hsu", ("hsu", "welch")),
            power=float(rcfg.get("power", 0.8)),
            trivial_fraction=float(rcfg.get("trivial_fraction", 0.1)),
            max_seeds=int(rcfg.get("max_seeds_reported", 100)),
            length_keys=tuple(rcfg.get("length_keys", ("T", "seq_len"))),
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

    def margin(self, baseline_loss: float | None, baseline_acc: float | None) -> float | None:
        """The equivalence margin in the test metric's units; None when its baseline is not
        recorded (relative margins need the trivial predictor's value)."""
        if self.margin_kind == "absolute":
            return self.equivalence_margin
        base = baseline_acc if self.maximize else baseline_loss
        if base is None or not base > 0:
            return None
        return self.equivalence_margin * base

    def margin_text(self) -> str:
        if self.margin_kind == "absolute":
            return f"±{self.equivalence_margin:g} (absolute)"
        base = "majority-class rate" if self.maximize else "trivial predictor's loss"
        return f"±{self.equivalence_margin:.0%} of the {base}"
