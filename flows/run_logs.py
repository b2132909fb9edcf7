"""The library's log lines (``logging`` under ``segloop.*``) in Prefect's run logs.

:class:`RunLogBridge` sits on the ``segloop`` logger. Inside a flow or task run it hands each
record, with the run's ids added, to the handlers of Prefect's run loggers, so the line shows
in the run's logs (API, UI) and on the console beside the flow's own lines, under its own
logger name. Outside a run (the CLI's other commands) it prints warnings and errors to the
current standard error, as Python does for a library without logging set up. The
``segloop`` logger does not propagate: root's handlers (Prefect's console) never see it.
"""

from __future__ import annotations

import copy
import logging
import sys

from segloop.runtime import LIBRARY_LOGGER


class RunLogBridge(logging.Handler):
    """Routes ``segloop.*`` records into the current Prefect run's logs (see module doc)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from prefect.context import FlowRunContext, TaskRunContext

            in_run = TaskRunContext.get() is not None or FlowRunContext.get() is not None
            if not in_run:
                if record.levelno >= logging.WARNING:
                    sys.stderr.write(f"segloop: {record.levelname.lower()}: "
                                     f"{record.getMessage()}\n")
                return
            from prefect.logging import get_run_logger

            adapter = get_run_logger()
            target = adapter.logger if isinstance(adapter, logging.LoggerAdapter) else adapter
            routed = copy.copy(record)
            routed.__dict__.update(getattr(adapter, "extra", None) or {})
            for handler in target.handlers:
                if routed.levelno >= handler.level:
                    handler.handle(routed)
        except Exception:  # noqa: BLE001 - logging must never break a run
            self.handleError(record)


def install() -> RunLogBridge:
    """Attach the bridge to the ``segloop`` logger once (idempotent); returns it."""
    library = logging.getLogger(LIBRARY_LOGGER)
    for handler in library.handlers:
        if isinstance(handler, RunLogBridge):
            return handler
    bridge = RunLogBridge()
    library.addHandler(bridge)
    library.propagate = False  # the bridge decides where a line goes (not root's handlers)
    return bridge
