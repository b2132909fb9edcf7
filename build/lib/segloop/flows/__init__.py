"""Prefect flows of segloop: thin, numbered steps over the library in ``segloop``.

Importing this package sets the offline Prefect defaults (project-local PREFECT_HOME,
analytics off, generous server start-up timeout) before Prefect itself is imported.
"""

from segloop.runtime import configure_offline

configure_offline()
