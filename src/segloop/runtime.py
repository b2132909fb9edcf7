"""Process-wide settings for running flows offline with no setup.

Prefect reads its settings from the environment, so these must be set before ``prefect`` is
imported. Values the user already exported win (``setdefault``). This module imports no
Prefect itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

DEFAULT_PREFECT_HOME = ".segloop/prefect"

OFFLINE_DEFAULTS: dict[str, str] = {
    # Prefect's own local server (SQLite) starts on demand; give it time on first start.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_CLI_PROMPT": "false",
    # DVC, the Hugging Face hub, MLflow and FiftyOne: never phone home (MLflow's telemetry
    # otherwise runs a background thread that posts usage records from every process).
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "FIFTYONE_DO_NOT_TRACK": "true",
}


LIBRARY_LOGGER = "segloop"
"""The library logs under ``segloop.*`` (:mod:`segloop.flows.run_logs` routes it)."""


def configure_offline(prefect_home: str | os.PathLike[str] = DEFAULT_PREFECT_HOME) -> None:
    """Set project-local, offline-safe defaults for Prefect, DVC and the HF hub.

    ``prefect_home`` (made absolute against the current directory) becomes PREFECT_HOME
    unless one is already set. The ``segloop`` logger's level becomes INFO unless set
    already (``segloop.flows`` routes its lines into the runs' logs).
    """
    home = Path(prefect_home).expanduser().resolve()
    os.environ.setdefault("PREFECT_HOME", str(home))
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    library = logging.getLogger(LIBRARY_LOGGER)
    if library.level == logging.NOTSET:
        library.setLevel(logging.INFO)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
