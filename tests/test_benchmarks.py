"""The benchmark runner at a minimal size: it runs, and writes results with the machine."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks import __main__ as runner
from benchmarks import overhead, report
from benchmarks.__main__ import main
from benchmarks.common import cpu_model


@pytest.fixture(autouse=True)
def _logging_and_warnings_restored() -> Iterator[None]:
    """The runner quiets library loggers and warnings for its table; in-process, that
    would leak into every later test."""
    names = ("lightning", "lightning.pytorch", "optuna", "rnnsweep", "mlflow", "alembic")
    levels = {n: logging.getLogger(n).level for n in names}
    with warnings.catch_warnings():
        yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_overhead_benchmark_writes_results_with_the_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the command line, as `make bench` runs it: the runner itself adds the machine
    to the section, and latest.md names it."""
    size = {"hidden": 8, "seq_len": 5, "batch": 16, "n_train": 32, "n_val": 16}
    monkeypatch.setitem(runner.BENCHMARKS, "overhead",
                        lambda level: overhead.run(size, epochs=3, reps=1, cells=("gru",)))
    assert main(["--only", "overhead", "--level", "quick", "--results", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert list(saved) == ["overhead"]
    section = saved["overhead"]
    assert section["level"] == "quick" and section["seconds"] > 0
    assert section["cells"]["gru"]["ratio_cpu"]["n"] == 1
    assert section["cells"]["gru"]["ratio_cpu"]["median"] > 0
    machine = section["machine"]
    assert machine["cpu_model"] == cpu_model() and machine["cpu_cores"] == os.cpu_count()
    assert machine["torch"] == torch.__version__
    assert machine["cuda_available"] is torch.cuda.is_available()
    assert len(machine["load_avg_at_start"]) == 3
    md = (tmp_path / "latest.md").read_text()
    assert f"Machine: {cpu_model()}, {os.cpu_count()} cores" in md
    assert f"torch {torch.__version__}" in md
    assert "framework overhead, gru" in md and "level quick" in md
    # A second benchmark's section is added beside the first, which is kept as it was.
    data = report.update(tmp_path, "other", {"machine": machine, "measured_at": "x"})
    assert data["overhead"] == section
    assert json.loads((tmp_path / "latest.json").read_text())["overhead"] == section


def test_readme_block_is_rewritten_between_markers_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold table\n{report.END}\nrest\n")
    section = {"sweeps": {"smoke": {"command": "python train.py -m", "wall_s": 12.0,
                                    "cpu_s": 10.0, "returncode": 0, "error": None}},
               "measured_at": "2026-01-01T00:00:00Z", "machine": {"cpu_model": "x"}}
    report.update_readme({"e2e": section}, readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n")
    assert "old table" not in text and "12 s wall" in text
    assert "Measured on x," in text


def test_paper_results_rewrite_the_readme_and_the_time_table(tmp_path: Path) -> None:
    """papers.json's entries become the README's verdict table and docs/performance.md's
    wall-time table (with CPU time and load), each between its markers only."""
    from benchmarks import papers

    readme, perf = tmp_path / "README.md", tmp_path / "performance.md"
    readme.write_text(f"a\n{papers.START}\nold\n{papers.END}\nb\n")
    perf.write_text(f"c\n{papers.TIME_START}\nold\n{papers.TIME_END}\nd\n")
    table = ("paper,result,setting,published,condition,ours,verdict,evidence\n"
             "P,lstm: q,s,1,large,2,not reproduced,e\n")
    results = {"chung2014": {"profile": "chung2014", "measured_at": "2026-12-06T05:06:30Z",
                             "wall_s": 2379.1, "cpu_s": 3220.6, "load_avg_after": [1.0, 1, 1],
                             "machine": {"cpu_model": "x", "cpu_cores": 2,
                                         "load_avg_at_start": [1.7, 1, 1]},
                             "published_table": table}}
    papers.update_readme(results, readme, perf)
    text = readme.read_text()
    assert text.startswith("a\n") and text.endswith("b\n") and "old" not in text
    assert "| `chung2014` (2026-12-06, 2 cores, 40 min wall) | P: lstm: q [large] |" in text
    times = perf.read_text()
    assert times.startswith("c\n") and times.endswith("d\n") and "old" not in times
    assert "| `chung2014` | 2026-12-06 | 40 min | 54 min | 1.7 / 1.0 | x, 2 cores |" in times


def test_unknown_benchmark_name_is_rejected(capsys) -> None:
    assert main(["--only", "nope"]) == 2
    assert "--only nope is invalid" in capsys.readouterr().err


@pytest.mark.slow  # trains or runs a study in-process for seconds
def test_search_efficiency_result_shape_at_the_tiniest_size() -> None:
    """Two tiny configurations, one seed: every study spends its step budget, each trial's
    steps add up, and the runner's table reads the section (row 3)."""
    from benchmarks import search_efficiency as se

    section = se.run(seeds=1, configs=["random+none", "tpe+median"], extra=se.TINY)
    assert section["configs"] == ["random+none", "tpe+median"]
    assert section["step_budget"] == 3 * 20 and section["seeds"] == 1
    for key, studies in section["trials"].items():
        (log,) = studies
        assert log[-1]["cum_steps"] >= section["step_budget"], key
        assert [t["cum_steps"] for t in log] == [
            sum(t["steps"] for t in log[: i + 1]) for i in range(len(log))]
        assert all(0 < t["steps"] <= 20 for t in log if t["state"] != "fail"), key
        c = section["analysis"]["configs"][key]
        assert c["reached"] <= 1 and c["final_best_at_equal_steps"]["n"] == 1
    assert section["analysis"]["configs"]["random+none"]["reached"] == 1
    assert section["choice"]["default"] == "tpe+median"
    assert "vs random search: optimiser steps to within 5%" in report.markdown({"search": {
        **section, "machine": {}, "measured_at": "x"}})
    assert "| random+none | 1/1 |" in se.table(section)
