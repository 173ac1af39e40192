"""Shared helpers: config composition in a throwaway root, machine description, statistics."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


@contextmanager
def project_copy() -> Iterator[tuple[Path, dict[str, str]]]:
    """train.py and conf/ in a fresh folder (own mlruns/), and an environment without the
    caller's MLflow or project settings: a worker there touches nothing of the user's."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        shutil.copy2(ROOT / "train.py", project / "train.py")
        shutil.copytree(ROOT / "conf", project / "conf")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RNNSWEEP_"))}
        yield project, env


@contextmanager
def temp_root(path: Path) -> Iterator[Path]:
    """Point every store (Optuna, MLflow) at `path`, so the user's mlruns/ stays untouched."""
    saved = {k: os.environ.get(k) for k in ("RNNSWEEP_ROOT", "MLFLOW_TRACKING_URI")}
    os.environ["RNNSWEEP_ROOT"] = str(path)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        yield path
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """The typed, validated config train.py would build from these overrides."""
    from rnnsweep.job import prepare

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return prepare(compose("config", overrides=list(overrides)))
    finally:
        GlobalHydra.instance().clear()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, object]:
    """What the numbers were measured on; written beside every result."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
        "mkl_available": torch.backends.mkl.is_available(),
        "cuda_available": torch.cuda.is_available(),
        "gpu": gpu,
        "load_avg_at_start": list(os.getloadavg()),
    }


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median with min/max and quartiles: the spread of interleaved repetitions."""
    xs = sorted(float(v) for v in values)
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1],
            "q1": q[0], "q3": q[2], "n": len(xs)}


def fmt_spread(s: dict[str, float], digits: int = 3) -> str:
    return f"{s['median']:.{digits}g} [{s['min']:.{digits}g}–{s['max']:.{digits}g}]"
