"""Tasks as LightningDataModules, selected by `data.task`."""

from rnnsweep.data.registry import build_datamodule, task_names

__all__ = ["build_datamodule", "task_names"]
