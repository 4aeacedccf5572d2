"""Errors a user or operator can act on: the CLI prints them as one line.

``PipelineError`` (exit status 2) is a usage or input error: a bad conf, date or argument, missing
or incomplete input data. ``RunFailure`` (exit status 1) is a run that could not finish although
its input was fine: a rank that died or hung, a loss that went NaN, a time limit, a lock held by
another run. Any other exception is a bug and keeps its traceback.
"""


class PipelineError(Exception):
    """Base class for errors caused by input, configuration or data, not by a bug."""


class ConfigError(PipelineError):
    """A conf file or ``--set`` override is missing, unknown, mistyped or out of range."""


class RunFailure(Exception):
    """A run that failed for a reason other than its input (exit status 1)."""
