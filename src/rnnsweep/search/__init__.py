"""Optuna studies: search space, storage, objective and the per-study loop."""
