"""Tasks as LightningDataModules, selected by `data._target_` (conf/data/<task>.yaml).

The registry (and with it torch) loads on first use, so the preflight can import
rnnsweep.data.file_loaders (numpy only) to refuse a bad file before torch is imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_datamodule", "task_names"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rnnsweep.data import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
