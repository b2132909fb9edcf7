"""The exception hierarchy of segloop.

Every error a user can cause says *what* is wrong (file, key or value) and *how to fix
it*. Code raises these instead of asserting on user input.
"""

from __future__ import annotations


class SegloopError(Exception):
    """Base class: anything segloop raises on purpose."""


class ConfigError(SegloopError, ValueError):
    """A config file is missing, unparsable, or has a bad or unknown key."""


class DataError(SegloopError, ValueError):
    """A dataset file or folder is unreadable, inconsistent or empty."""


class StoreError(SegloopError):
    """A Parquet table is missing, has the wrong schema, or was written by a newer segloop."""


class VersioningError(SegloopError):
    """git or DVC failed while versioning a dataset or a label round."""


class RemoteError(VersioningError):
    """A transfer to or from the DVC remote failed (network, credentials, a hung server): a
    retry may succeed, and the commit it belongs to is kept."""


class ModelNotFoundError(SegloopError, FileNotFoundError):
    """Model weights are not on this machine: says which model, where it looked, how to get it."""


class BusyError(SegloopError):
    """Another run holds the output (or workspace) this run would write: it names that run."""
