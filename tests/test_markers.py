"""The marker scheme behind `make test-fast`: every test that starts a process is `e2e`."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT, spawns_process


def _helper_that_spawns() -> None:
    subprocess.run(["true"], check=False)


def _calls_the_helper() -> None:
    _helper_that_spawns()


def _pure() -> int:
    return sum(range(3))


def test_spawning_is_found_in_the_test_and_through_its_module_helpers() -> None:
    module = sys.modules[__name__]
    # As attributes: calling them by name here would mark this test e2e itself.
    assert spawns_process(module._helper_that_spawns, module)
    assert spawns_process(module._calls_the_helper, module)
    assert not spawns_process(module._pure, module)


def test_fast_selection_leaves_out_every_subprocess_test() -> None:
    fast = "not slow and not e2e"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-m", fast, "tests/test_console.py", "tests/test_dashboard.py", "tests/test_report.py",
         "tests/test_mlflow_usage.py", "tests/test_markers.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    selected = {line.split("[")[0] for line in proc.stdout.splitlines() if "::" in line}
    # Through the smoke_sweep / project fixtures, a fixture that starts a server, a module
    # helper that runs a command line, and a test's own subprocess call.
    for spawning in (
        "tests/test_console.py::test_smoke_sweep_console_is_clean",
        "tests/test_console.py::test_help_lists_every_group_and_option",
        "tests/test_dashboard.py::",
        "tests/test_report.py::",
        "tests/test_mlflow_usage.py::test_make_reproduce_without_a_run_or_a_store_says_so",
        "tests/test_markers.py::test_fast_selection_leaves_out_every_subprocess_test",
    ):
        assert not any(s.startswith(spawning) for s in selected), spawning
    for unit in (
        "tests/test_console.py::test_summary_marks_the_best_cell_per_data_size",
        "tests/test_mlflow_usage.py::test_experiment_kind_is_set_on_new_and_existing_experiments",
        "tests/test_markers.py::test_spawning_is_found_in_the_test_and_through_its_module_helpers",
    ):
        assert unit in selected, unit


def test_a_python_process_missed_by_the_marking_fails_a_fast_run(tmp_path) -> None:
    hidden = tmp_path / "test_hidden.py"
    # getattr hides the call from the static check: only the run-time guard can catch it.
    hidden.write_text(
        "import sys\n"
        "def test_starts_python():\n"
        "    run = getattr(__import__('sub' + 'process'), 'run')\n"
        "    run([sys.executable, '-c', 'pass'], check=True)\n"
    )
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
            "--rootdir", str(tmp_path), str(hidden)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    fast = subprocess.run([*base, "-m", "not slow and not e2e"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert fast.returncode == 1, fast.stdout[-2000:]
    assert "mark it with @pytest.mark.e2e" in fast.stdout
    full = subprocess.run(base, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert full.returncode == 0, full.stdout[-2000:]
