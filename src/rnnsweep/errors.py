"""Errors the command line reports as one line, before anything is created."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and what is allowed."""


class DataError(ValueError):
    """A dataset file or generated dataset is malformed; the message names the file."""
