"""Shared fixtures: a throwaway copy of the project and one smoke sweep reused by many tests.

Markers: `slow` is set by hand; `e2e` is set here on every test that starts a sweep or a
server in a subprocess: it uses one of E2E_FIXTURES, or its own code (or a helper of its
module that it calls) spawns a process. `make test-fast` deselects both, and under that
selection a test that still starts `python train.py` fails with the reason (mark it e2e).
"""

from __future__ import annotations

import ast
import copy
import functools
import inspect
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import forked_python
import pytest

# make test hands the files to its workers longest first (tests/file_order.py).
pytest_plugins = ["file_order"]

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

# Fixtures that run train.py, a module's command line or a server in another process.
E2E_FIXTURES = {"smoke_sweep", "project", "chorale_cache"}
# Names whose use in a test's code means it spawns a process.
SPAWNING_NAMES = {"subprocess", "run_train", "run_python", "start_train", "serve", "Popen",
                  "run_report"}
# This file's autouse fixtures: on every test, never a reason to mark it.
HARNESS_FIXTURES = {"_no_sweep_subprocess_in_fast_runs", "_mlflow_tracking_uri_restored",
                    "_sys_path_restored"}


@functools.cache  # a parametrized test is one function for all its items
def _called_names(func) -> frozenset[str]:
    """Every name a function's own code uses (`subprocess` in `subprocess.run(...)` too)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return frozenset()
    return frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name))


def spawns_process(func, module, depth: int = 2) -> bool:
    """True when `func` uses a spawning name, directly or through a function of `module`
    (followed `depth` calls deep)."""
    names = _called_names(func)
    if names & SPAWNING_NAMES:
        return True
    if depth == 0:
        return False
    for name in names:
        helper = getattr(module, name, None)
        if (inspect.isfunction(helper) and helper is not func
                and helper.__module__ == module.__name__
                and spawns_process(helper, module, depth - 1)):
            return True
    return False


def is_e2e(item: pytest.Item) -> bool:
    """The test, or a fixture it uses, runs a subprocess (see the module docstring)."""
    if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        funcs += [d.func for d in defs if d.argname not in HARNESS_FIXTURES]
    for func in funcs:
        if func is None or not inspect.isfunction(func):
            continue
        module = inspect.getmodule(func)
        if module is None or not str(getattr(module, "__file__", "")).startswith(str(TESTS)):
            continue  # pytest's own fixtures
        if spawns_process(func, module):
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if is_e2e(item):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _mlflow_tracking_uri_restored() -> Iterator[None]:
    """mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI, which rnnsweep reads first:
    a test that calls it would send every later test's runs to its store. Both are put back
    after each test."""
    saved_env = os.environ.get("MLFLOW_TRACKING_URI")
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    saved_global = getattr(utils, "_tracking_uri", None)
    yield
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if utils is not None and getattr(utils, "_tracking_uri", None) != saved_global:
        utils.set_tracking_uri(saved_global)
    if saved_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved_env


@pytest.fixture(autouse=True)
def _sys_path_restored() -> Iterator[None]:
    """mlflow.pytorch.load_model puts the logged model's code folder (a copy of rnnsweep)
    first on sys.path: a module imported later, in this worker or in a run forked from it
    (forked_python hands each run this sys.path), would come from that copy, whose
    published/ and conf/ are not beside it. Put back after each test."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


@pytest.fixture(autouse=True)
def _no_sweep_subprocess_in_fast_runs(request: pytest.FixtureRequest, monkeypatch) -> None:
    """Under `-m "... not e2e"`, starting a Python process (train.py, a module's command
    line) fails: such a test belongs to the e2e set, and the automatic marking missed it."""
    if "not e2e" not in (request.config.option.markexpr or ""):
        return
    real_init = subprocess.Popen.__init__

    def guarded(self, args, *a, **kw):
        argv = [str(x) for x in ([args] if isinstance(args, (str, bytes, Path)) else args)]
        if argv and ("python" in Path(argv[0]).name or argv[0] == sys.executable):
            raise AssertionError(
                f"{request.node.nodeid} starts {' '.join(argv)[:120]!r} in a fast run: "
                "mark it with @pytest.mark.e2e"
            )
        real_init(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)


def make_project_copy(dst: Path) -> Path:
    """train.py and conf/ in a fresh folder: its own mlruns/ and outputs/, nothing shared."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "train.py", dst / "train.py")
    shutil.copytree(ROOT / "conf", dst / "conf")
    return dst


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "RNNSWEEP_"))}
    env.update(extra)
    return env


def run_train(project: Path, *args: str, timeout: float = 300, workers: bool = False,
              fresh: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    """train.py in `project`. A sweep runs its jobs in one process (hydra/launcher=basic)
    unless `workers`: each joblib worker imports torch, Lightning and MLflow again, which
    costs more CPU than the smoke jobs themselves, and make test runs two test files at once
    on two cores. The tests about the workers (tests/test_parallel_sweep.py,
    tests/test_preemption.py, the console of the literal command) ask for them.

    A run in one process is forked from an interpreter with the third-party modules
    already imported (run_python) unless `fresh`. A run with workers starts a new one."""
    if "-m" in args and not workers and not any(a.startswith(("hydra/launcher", "hydra.launcher"))
                                                for a in args):
        args = (*args, "hydra/launcher=basic")
    fresh = fresh or workers or not forked_python.one_process(args)
    return run_python(project, "train.py", *args, timeout=timeout, fresh=fresh, **env)


def run_python(cwd: Path, *argv: str, timeout: float = 300, fresh: bool = False,
               **env: str) -> subprocess.CompletedProcess[str]:
    """`python *argv` in `cwd` with clean_env(**env), output captured. Forked from an
    interpreter that has imported torch, Lightning, MLflow, Optuna and Hydra
    (tests/forked_python.py: those imports cost seconds of CPU per run) unless `fresh`: a new
    interpreter, for what happens while those modules import (warnings, start-up)."""
    if fresh:
        return subprocess.run([sys.executable, *argv], cwd=cwd, env=clean_env(**env),
                              capture_output=True, text=True, timeout=timeout)
    code, out, err = forked_python.run(cwd, list(argv), clean_env(**env), timeout)
    return subprocess.CompletedProcess([sys.executable, *argv], code, out, err)


def new_mlflow_store(db: Path) -> str:
    """A new SQLite MLflow store at `db`, made as the project makes one (rnnsweep.store_init:
    a copy of the cached empty schema once one was built, not MLflow's 2 s of migrations);
    returns its URI."""
    from rnnsweep.store_init import ensure_sqlite_store
    from rnnsweep.store_schemas import MLFLOW

    uri = f"sqlite:///{db}"
    ensure_sqlite_store(uri, "tracking.uri", MLFLOW)
    return uri


def query(db: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql, params).fetchall()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project_copy(tmp_path / "project")


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python train.py -m cell=lstm,gru experiment=smoke` in a fresh copy, run once."""
    project = make_project_copy(tmp_path_factory.mktemp("smoke") / "project")
    # Generous limit: the machine is often shared, and re-evaluation adds 8 short fits.
    proc = run_train(project, "-m", "cell=lstm,gru", "experiment=smoke", timeout=900,
                     workers=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # What the user saw, for the console tests.
    (project / "sweep.stdout").write_text(proc.stdout)
    (project / "sweep.stderr").write_text(proc.stderr)
    return project


@pytest.fixture(scope="session")
def chorale_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A piano-roll cache of the first 6 bundled chorales, built by the real command (all
    of them take minutes)."""
    path = tmp_path_factory.mktemp("chorales") / "chorales.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "rnnsweep.data.prepare_chorales", "--out", str(path),
         "--max-chorales", "6"], env=clean_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "6 chorales" in proc.stderr
    return path


@pytest.fixture
def typed(tmp_path, monkeypatch):
    """typed(*overrides): the typed config train.py would run, composed in-process."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from rnnsweep.job import typed_config

    monkeypatch.setenv("RNNSWEEP_ROOT", str(tmp_path))

    def make(*overrides: str):
        if overrides not in _COMPOSED:
            GlobalHydra.instance().clear()
            try:
                with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
                    _COMPOSED[overrides] = compose("config", overrides=["experiment=smoke",
                                                                         *overrides])
            finally:
                GlobalHydra.instance().clear()
        # Interpolations (RNNSWEEP_ROOT's paths) are resolved here, per test.
        return typed_config(copy.deepcopy(_COMPOSED[overrides]))
    return make


# Hydra composes a config in about 0.15 s of CPU; tests ask for the same overrides often.
_COMPOSED: dict[tuple[str, ...], object] = {}


def _parse_each_yaml_text_once() -> None:
    """Hydra parses every config file again at each compose (a defaults list reads each
    file twice), with PyYAML's pure-Python loader, most of a compose's time.
    In the test processes, OmegaConf.load of an open file parses each distinct text once
    and builds the config from a copy of the parsed data; a text that fails to parse is
    parsed (and fails) every time. The commands the tests run are not affected."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf._utils import get_yaml_loader

    parsed: dict[str, object] = {}
    load_path = OmegaConf.load

    def load(file_):
        if not hasattr(file_, "read"):  # a path: Hydra passes open files
            return load_path(file_)
        text = file_.read()
        if text not in parsed:
            parsed[text] = yaml.load(text, Loader=get_yaml_loader())
        obj = copy.deepcopy(parsed[text])
        if obj is not None and not isinstance(obj, (list, dict, str)):
            raise OSError(f"Invalid loaded object type: {type(obj).__name__}")  # as load's
        return OmegaConf.create() if obj is None else OmegaConf.create(obj)

    OmegaConf.load = staticmethod(load)


_parse_each_yaml_text_once()


HEAVY_MODULES = {"torch", "lightning", "mlflow", "optuna"}


def refused_before_heavy_imports(project: Path, *argv: str) -> list[str]:
    """Run `python -X importtime train.py ...`, which must exit 2 without importing torch,
    Lightning, MLflow or Optuna (the listing is on stderr); returns stderr's other lines."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "train.py", *argv],
                          cwd=project, env=clean_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "hydra" in imported  # the listing works: the refusal needs Hydra
    heavy = HEAVY_MODULES & imported
    assert not heavy, f"imported before the refusal: {sorted(heavy)}"
    return [ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")]


# Output a user cannot act on, as printed before the filters existed.
NOISE = (
    "💡 Tip", "ExperimentalWarning", "LeafSpec", "Creating initial MLflow database tables",
    "Downloading artifacts", "A new study created", "finished with value", "noload",
)
