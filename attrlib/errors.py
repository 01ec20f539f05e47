"""Errors attrlib raises for bad input. Each message names the file, row or field and says what to do."""


class AttrlibError(Exception):
    """Base class of every error attrlib raises on purpose."""


class ConfigError(AttrlibError, ValueError):
    """A parameter has a wrong value; the message lists the valid choices."""


class DataError(AttrlibError, ValueError):
    """The data (a folder, a manifest, an image) cannot be used as it is."""


class CheckpointError(AttrlibError):
    """A checkpoint is missing, corrupt or unsafe to load."""


class WriteError(AttrlibError, OSError):
    """A result file cannot be written (full disk, permissions); the previous version is left intact."""
