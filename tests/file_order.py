"""Test files handed to make test's workers longest first.

pytest-xdist's `--dist loadfile` queue hands out whole files in collection order (by default
reordered by how many tests a file has, which put the few long end-to-end files last): one
worker then ran the last long file while the other stood idle. Ordering the files by the
seconds they took last time, longest first (the longest-processing-time rule), leaves the
short files for the end. `make test-durations` records the seconds in tests/durations.json
(`--store-durations`, a whole run's setup, call and teardown per file, merged into what is
there); a file not recorded yet goes first, as if it were the longest.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("durations.json")


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def recorded_seconds(path: Path = DURATIONS) -> dict[str, float]:
    return json.loads(path.read_text()) if path.exists() else {}


def longest_first(items: list[pytest.Item], seconds: dict[str, float]) -> None:
    """Sort in place by file, longest recorded first; a stable sort keeps each file's tests
    together and in order."""
    items.sort(key=lambda item: -seconds.get(file_of(item.nodeid), math.inf))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store-durations", action="store_true",
                     help=f"record each test file's seconds in {DURATIONS.name}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    longest_first(items, recorded_seconds())


def pytest_configure(config: pytest.Config) -> None:
    # Only a run that records adds up the seconds; under xdist the controller receives every
    # worker's reports, so it alone records.
    if config.getoption("store_durations") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(DurationRecorder(), "file_order_durations")


class DurationRecorder:
    """Each file's seconds of this run (setup, call and teardown), merged into DURATIONS."""

    def __init__(self) -> None:
        self.taken: defaultdict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.taken[file_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self) -> None:
        DURATIONS.write_text(merged_json(recorded_seconds(), self.taken))


def merged_json(recorded: dict[str, float], taken: dict[str, float]) -> str:
    """The files of this run with their new seconds, the others as recorded, by name."""
    merged = {**recorded, **{f: round(s, 1) for f, s in taken.items()}}
    return json.dumps(dict(sorted(merged.items())), indent=1) + "\n"
