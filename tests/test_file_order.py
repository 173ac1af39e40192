"""make test's file order (tests/file_order.py): longest recorded file first, each file's
tests together and in order, a file never recorded before all others."""

from __future__ import annotations

import json
from types import SimpleNamespace

from file_order import longest_first, merged_json


def _items(*nodeids: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(nodeid=n) for n in nodeids]


def test_longest_file_first_and_each_file_kept_together_in_order():
    items = _items("tests/a.py::t1", "tests/a.py::t2", "tests/b.py::t1", "tests/new.py::t1",
                   "tests/b.py::t2[x]", "tests/c.py::t1")
    longest_first(items, {"tests/a.py": 1.0, "tests/b.py": 30.0, "tests/c.py": 5.0})
    assert [i.nodeid for i in items] == [
        "tests/new.py::t1",  # not recorded: as if the longest
        "tests/b.py::t1", "tests/b.py::t2[x]", "tests/c.py::t1",
        "tests/a.py::t1", "tests/a.py::t2"]


def test_a_run_replaces_its_files_seconds_and_keeps_the_others():
    text = merged_json({"tests/a.py": 3.0, "tests/b.py": 9.0}, {"tests/b.py": 4.04,
                                                               "tests/c.py": 0.26})
    assert json.loads(text) == {"tests/a.py": 3.0, "tests/b.py": 4.0, "tests/c.py": 0.3}
    assert list(json.loads(text)) == sorted(json.loads(text))

