"""Exceptions a user can cause. The CLI turns each into one line on stderr and exit status 2."""


class ScarError(Exception):
    """Base class of every error caused by input, configuration, data or storage."""


class ConfigError(ScarError, ValueError):
    """An invalid setting (a flag, a parameter of the API)."""


class DatasetError(ScarError):
    """A dataset is unknown, missing or unreadable."""


class StoreError(ScarError):
    """A checkpoint store cannot be opened, read or written."""


class CorruptCheckpointError(StoreError):
    """A checkpoint file failed its integrity check."""
