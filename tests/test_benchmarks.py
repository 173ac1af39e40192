"""The benchmark runner at a minimal size: it runs, and writes results with the machine."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import overhead, report
from benchmarks.__main__ import main


def test_overhead_benchmark_writes_results_with_the_machine(tmp_path: Path) -> None:
    size = {"hidden": 8, "seq_len": 5, "batch": 16, "n_train": 32, "n_val": 16}
    section = overhead.run(size, epochs=3, reps=1, cells=("gru",))
    section["machine"] = {"cpu_cores": 2}
    data = report.update(tmp_path, "overhead", section)
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert saved["overhead"]["cells"]["gru"]["ratio_cpu"]["n"] == 1
    assert data["overhead"]["cells"]["gru"]["ratio_cpu"]["median"] > 0
    assert "framework overhead, gru" in (tmp_path / "latest.md").read_text()


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


def test_unknown_benchmark_name_is_rejected(capsys) -> None:
    assert main(["--only", "nope"]) == 2
    assert "--only nope is invalid" in capsys.readouterr().err
