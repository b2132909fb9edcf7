"""DVC + git versioning of datasets and append-only label rounds.

A workspace is a git + DVC repository (see :func:`init_workspace`); every change to it
runs under :func:`versioning_lock`. git and DVC run as subprocesses in the workspace
root only (``segloop.versioning.commands``).
"""

from segloop.versioning import lineage
from segloop.versioning.rounds import (
    LABELS,
    METRICS_DIR,
    ROUND_DIR,
    ROUND_TAG,
    RoundInfo,
    RoundKind,
    checkout_round,
    commit_round,
    list_rounds,
    next_round_number,
    record_round_metrics,
    retract_round,
    seed_rounds,
)
from segloop.versioning.workspace import (
    LOCK_NAME,
    REMOTE_NAME,
    Workspace,
    ignore_in_workspace,
    init_workspace,
    version_path,
    versioning_lock,
)

__all__ = [
    "LABELS",
    "LOCK_NAME",
    "METRICS_DIR",
    "REMOTE_NAME",
    "ROUND_DIR",
    "ROUND_TAG",
    "RoundInfo",
    "RoundKind",
    "Workspace",
    "checkout_round",
    "commit_round",
    "ignore_in_workspace",
    "init_workspace",
    "lineage",
    "list_rounds",
    "next_round_number",
    "record_round_metrics",
    "retract_round",
    "seed_rounds",
    "version_path",
    "versioning_lock",
]
