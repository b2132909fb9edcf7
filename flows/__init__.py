"""Prefect flows of segloop: thin, numbered steps over the library in ``segloop``.

Importing this package sets the offline Prefect defaults (project-local PREFECT_HOME,
analytics off, generous server start-up timeout) before Prefect itself is imported, and
routes the library's log lines into the runs' logs (:mod:`segloop.flows.run_logs`).
"""

from segloop.runtime import configure_offline

configure_offline()

from segloop.flows import run_logs  # noqa: E402  (after the offline defaults)

run_logs.install()
