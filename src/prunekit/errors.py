"""Exception types raised for bad user input.

Every error a user can cause derives from :class:`PrunekitError` (itself a
``ValueError``), so the CLI can print it as one line instead of a traceback.
"""
from __future__ import annotations


class PrunekitError(ValueError):
    """Base class of every error caused by user input (files, arguments, models)."""


class DataError(PrunekitError):
    """A dataset file is missing, malformed or truncated; the message names the file."""


class CheckpointError(PrunekitError):
    """A file is not a prunekit checkpoint, is corrupt, or describes an unknown architecture."""


class ConfigError(PrunekitError):
    """A config or recipe has an unknown key or a value of the wrong type."""


class UnsupportedModelError(PrunekitError):
    """A model cannot be traced or analysed; the message names the op or module."""


class ExportError(PrunekitError):
    """A model cannot be exported, or its export does not reproduce the model; the message says which and why."""
