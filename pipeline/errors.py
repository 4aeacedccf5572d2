"""Errors a user can act on: the CLI prints them as one line and exits non-zero."""


class PipelineError(Exception):
    """Base class for errors caused by input, configuration or data, not by a bug."""


class ConfigError(PipelineError):
    """A conf file or ``--set`` override is missing, unknown, mistyped or out of range."""
