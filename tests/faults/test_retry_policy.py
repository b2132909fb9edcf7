"""Which errors a task retries: only those that may pass."""

from __future__ import annotations

import errno

import pytest

from segloop.errors import ConfigError, DataError, RemoteError, VersioningError
from segloop.tasks._retry import is_transient


@pytest.mark.parametrize("err, retried", [
    (OSError(errno.ENOSPC, "No space left on device"), False),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), False),
    (PermissionError(errno.EACCES, "denied"), False),
    (FileNotFoundError(errno.ENOENT, "gone"), False),
    (OSError(errno.EROFS, "read-only"), False),
    (DataError("bad png"), False),
    (ConfigError("bad key"), False),
    (VersioningError("tag exists"), False),
    (TypeError("bug"), False),
    (KeyError("bug"), False),
    (AssertionError(), False),
    (KeyboardInterrupt(), False),
    (RemoteError("dvc push failed"), True),
    (ConnectionResetError(errno.ECONNRESET, "reset"), True),
    (TimeoutError("slow"), True),
    (OSError(errno.EAGAIN, "try again"), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), True),
    (RuntimeError("shape mismatch"), False),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_only_errors_that_may_pass_are_retried(err: BaseException, retried: bool) -> None:
    assert is_transient(err) is retried
