"""Retry policy of segloop's tasks: only errors that may pass on a second try."""

from __future__ import annotations

import errno

from segloop.errors import RemoteError, SegloopError

#: OSError numbers worth a second try: the network, a busy device, an interrupted call.
#: Not a full disk (ENOSPC, EDQUOT), a read-only or missing path, or a denied permission.
TRANSIENT_ERRNOS = frozenset({
    errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ECONNRESET,
    errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE, errno.EHOSTUNREACH,
    errno.ENETUNREACH, errno.ENETDOWN, errno.ENETRESET,
})


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` may pass on a retry: a failed transfer to the DVC remote, a network
    or busy-device ``OSError``, a timeout, or the GPU running out of memory (another job
    may free it). Not segloop's own other errors (bad input, bad config, missing weights),
    a full disk, or programming errors: they would fail again the same way, after
    repeating work."""
    if isinstance(err, RemoteError):  # the remote may be back; the commit is kept
        return True
    if isinstance(err, SegloopError):
        return False
    if isinstance(err, TimeoutError | ConnectionError):
        return True
    if isinstance(err, OSError):
        return err.errno in TRANSIENT_ERRNOS
    name = type(err).__name__
    return name == "OutOfMemoryError" or (isinstance(err, RuntimeError)
                                          and "CUDA out of memory" in str(err))


def transient(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    """Prefect ``retry_condition_fn``: retry only :func:`is_transient` errors."""
    try:
        state.result()
    except BaseException as err:  # noqa: BLE001
        return is_transient(err)
    return False
