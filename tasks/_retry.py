"""Retry policy shared by tasks that run models."""

from __future__ import annotations

from segloop.errors import SegloopError


def transient(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    """Prefect ``retry_condition_fn``: retry errors that may pass (I/O, CUDA out of memory),
    not segloop's own errors (bad input, bad config, missing weights), which would fail
    again the same way."""
    try:
        state.result()
    except SegloopError:
        return False
    except Exception:  # noqa: BLE001
        return True
    return False
