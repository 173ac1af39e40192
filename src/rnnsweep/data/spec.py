"""What a task asks of the model: its input and output sizes and its loss kind."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """How the model's head and loss must look for a task."""

    input_size: int
    output_size: int
    # The loss kind (rnnsweep.losses): "mse" (regression), "bce" (multi-label sigmoid),
    # "ce" (classification).
    loss: str
    per_step: bool = False  # predict at every step (True) or once per sequence (False)
    variable_length: bool = False  # batches carry real lengths; padding must be masked
    acc_tolerance: float = 0.04  # regression: a prediction is correct when |error| < tolerance
