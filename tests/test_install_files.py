"""The install files install anywhere: no pin that only this machine can satisfy."""

from __future__ import annotations

import re

import pytest
import tomllib
import torch
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.version import Version

from rnnsweep.lockfile import NOTE, without_package

LOCK = (ROOT / "requirements.lock").read_text()


def _pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M))


def test_the_lock_pins_no_local_build_and_leaves_torch_to_its_own_file():
    pins = _pins(LOCK)
    assert "torch" not in pins
    local = {k: v for k, v in pins.items() if "+" in v}
    assert not local, f"local builds no public index serves: {local}"
    # every pin carries a hash: pip checks them all (hash-checking mode)
    assert LOCK.count(" \\\n    --hash=sha256:") >= len(pins)


def test_torch_is_pinned_once_and_the_installed_build_satisfies_it():
    torch_file = [ln for ln in (ROOT / "requirements-torch.txt").read_text().splitlines()
                  if ln and not ln.startswith("#")]
    assert len(torch_file) == 1
    req = Requirement(torch_file[0])
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (declared,) = [Requirement(d) for d in deps if Requirement(d).name == "torch"]
    assert req.specifier == declared.specifier
    # a local build (2.13.0+cpu) matches the public pin: the same pin serves every machine
    assert Version(torch.__version__) in req.specifier
    assert Version("2.13.0+cpu") in req.specifier


def test_make_lock_takes_torch_out_once():
    text = ("sympy==1.14.0 \\\n    --hash=sha256:aa\n    # via torch\n"
            "torch==2.13.0+cpu \\\n    --hash=sha256:bb\n    # via\n    #   lightning\n"
            "torchmetrics==1.9.0 \\\n    --hash=sha256:cc\n")
    out = without_package(text)
    assert _pins(out) == {"sympy": "1.14.0", "torchmetrics": "1.9.0"}
    assert NOTE in out and "sha256:bb" not in out and "sha256:cc" in out
    assert without_package(out) == out  # a second `make lock` step changes nothing
    with pytest.raises(SystemExit, match="no torch== pin"):
        without_package("sympy==1.14.0 \\\n    --hash=sha256:aa\n")
