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


class ModelOutputError(SegloopError):
    """A model gave unusable output for an input (NaN or infinite values): names the input,
    the model and what to try."""


class BusyError(SegloopError):
    """Another run holds the output (or workspace) this run would write: it names that run."""


#: What to try when a model in half precision gives NaN or infinite values (ModelOutputError).
FLOAT16_OVERFLOW = ("float16 can overflow: set base.dtype: float32 (or bfloat16 on a GPU that "
                    "has it)")

#: errno values of a full disk or an exhausted quota.
DISK_FULL_ERRNOS = (28, 122)  # ENOSPC, EDQUOT


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or what it was raised from) says the disk or quota is full."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return True
        err = err.__cause__  # type: ignore[assignment]
    return False


def disk_full_error(what: str, err: OSError) -> DataError:
    """The error for a write that ran out of space: what, where, and that nothing is
    half-written (the caller has removed its temporary file)."""
    return DataError(f"no space left to write {what} ({err.strerror or err}): free space on "
                     "that disk (or point the output elsewhere) and run again; nothing was "
                     "half-written and a rerun resumes where this one stopped")
