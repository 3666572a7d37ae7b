"""Errors the pipelines raise for bad input: each message names the file, row, column or key."""


class PipelineError(Exception):
    """Base class for errors a user can fix (bad data, bad config, unreachable service)."""


class DataError(PipelineError, ValueError):
    """Input data that cannot be used as it is; the message names the file and where in it."""


class ConfigError(PipelineError, ValueError):
    """A config value that is unknown or of the wrong type; the message names the dotted key."""
