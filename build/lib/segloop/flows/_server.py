"""Prefect's temporary local server, started so that Ctrl-C stops the flow, not the server.

Without a configured ``PREFECT_API_URL`` a flow run starts Prefect's ephemeral server as a
child process in the terminal's process group: Ctrl-C kills it together with the flow,
and the flow then spends minutes retrying to report its state to a dead server, ends
with a connection-refused traceback and stays "Running" in the database. Here the server
is started first, in a session of its own (and, on Linux, told to stop when this process
exits, even if killed), so an interrupted flow can still record how it ended; the crash
hook below records it as Cancelled.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child, before exec
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


@contextmanager
def interruptible_server() -> Iterator[None]:
    """Run the block against a temporary Prefect server out of the terminal's reach, unless
    a server is configured (``PREFECT_API_URL``), which is then used as it is."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from segloop.ast_race import import_without_gc

    SubprocessASGIServer = import_without_gc("prefect.server.api.server").SubprocessASGIServer

    real = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("preexec_fn", _die_with_parent)
        return real(*args, **kwargs)

    server = SubprocessASGIServer()
    with mock.patch.object(subprocess, "Popen", popen):
        server.start()
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            try:
                yield
            finally:
                _send_pending_logs()
    finally:
        server.stop()


def _send_pending_logs() -> None:
    """Send the flow's queued log lines while the server is still up (otherwise Prefect's log
    worker sends them at exit, to a stopped server, and prints a connection error)."""
    from prefect.logging.handlers import APILogWorker

    try:
        APILogWorker.drain_all(timeout=10)
    except Exception:  # noqa: BLE001 - a log line lost must not fail a finished run
        pass


def cancelled_on_interrupt(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_crashed`` hook: a run stopped by Ctrl-C (or SIGTERM) is recorded as Cancelled,
    not Crashed: a person stopped it, nothing broke."""
    message = str(getattr(state, "message", "") or "")
    if "interrupt signal" not in message and "termination signal" not in message:
        return
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Cancelled(message=f"stopped: {message}"),
                                  force=True)
