"""One home per default: conf/ holds every setting a user reads; where a schema dataclass
(rnnsweep.schema) also gives a value, for configs stored before a key existed or for
objects built in code, it must be the YAML's own. This test reads every group's YAML and
every dataclass default and names each key on which they disagree."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

from rnnsweep import schema
from rnnsweep.data.adding import AddingDataConfig
from rnnsweep.data.anbn import AnbnDataConfig
from rnnsweep.data.chorales import ChoralesDataConfig
from rnnsweep.data.file import FileDataConfig

CONF = ROOT / "conf"
# Each typed node and the YAML that sets its defaults (a file, and a node inside it).
SOURCES: dict[str, tuple[type, Path, tuple[str, ...]]] = {
    "model": (schema.ModelConfig, CONF / "config.yaml", ("model",)),
    "trainer": (schema.TrainerConfig, CONF / "trainer" / "default.yaml", ()),
    "search": (schema.SearchConfig, CONF / "search" / "tpe.yaml", ()),
    "report": (schema.ReportConfig, CONF / "report" / "default.yaml", ()),
    "report.cost_probe": (schema.CostProbeConfig, CONF / "report" / "default.yaml",
                          ("cost_probe",)),
    "optim": (schema.OptimConfig, CONF / "optim" / "adam.yaml", ()),
    "tracking": (schema.TrackingConfig, CONF / "tracking" / "local.yaml", ()),
    **{f"data={task}": (config, CONF / "data" / f"{task}.yaml", ())
       for task, config in (("adding", AddingDataConfig), ("anbn", AnbnDataConfig),
                            ("chorales", ChoralesDataConfig), ("file", FileDataConfig))},
}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        return None if dataclasses.is_dataclass(value) else value
    return None


def _yaml_value(value: Any) -> Any:
    """An `${oc.env:NAME,fallback}` value reads as its fallback (the variable unset)."""
    match = re.fullmatch(r"\$\{oc\.env:\w+,(.*)\}", value) if isinstance(value, str) else None
    return yaml.safe_load(match.group(1)) if match else value


def disagreements(cls: type, yaml_node: dict[str, Any]) -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        value = _default(f)
        if value in (None, "???", {}, []) or f.name not in yaml_node:
            continue  # one home: the YAML's (or the schema's alone); {} / [] is a shape
        if _yaml_value(yaml_node[f.name]) != value:
            out.append(f"{f.name}: schema {value!r}, YAML {yaml_node[f.name]!r}")
    return out


@pytest.mark.parametrize("node", list(SOURCES))
def test_every_schema_default_is_the_yaml_default(node):
    cls, path, inner = SOURCES[node]
    data = yaml.safe_load(path.read_text()) or {}
    for key in inner:
        data = data[key]
    assert disagreements(cls, data) == [], f"{node} ({path.relative_to(ROOT)})"


def test_a_changed_yaml_default_is_named():
    """The check can fail: a YAML value that moved away from the schema's is reported."""
    data = yaml.safe_load((CONF / "trainer" / "default.yaml").read_text())
    assert disagreements(schema.TrainerConfig, {**data, "max_steps": 999}) == [
        f"max_steps: schema {schema.TrainerConfig.max_steps!r}, YAML 999"]
