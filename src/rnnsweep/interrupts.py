"""Signals inside training: a Lightning callback that raises a held-back Ctrl-C/SIGTERM
between batches. The signal handling itself lives in rnnsweep.signals (no heavy imports, so
train.py installs it before its preflight)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback

from rnnsweep.signals import raise_pending


class BatchBoundaryCheck(Callback):
    """Lightning callback: a held-back Ctrl-C/SIGTERM stops training after the current batch."""

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        raise_pending()

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        raise_pending()
