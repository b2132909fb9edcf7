"""Temporary names of segloop's writers, and the one sweep that removes a killed writer's.

Every writer writes ``.<name>.tmp-<hex>`` (a file, or a folder for label rounds) beside its
target and renames it into place when complete; a download writes ``.<name>.partial-<hex>``.
A writer killed midway leaves such a name behind: :func:`sweep` removes them, and the DVC
workspace ignores them (``.dvcignore``), so a leftover is never versioned.
"""

from __future__ import annotations

import posixpath
import uuid
from pathlib import Path
from typing import Any

from segloop.data.fs import url_to_fs

TEMP_INFIX = ".tmp-"
PARTIAL_INFIX = ".partial-"
IGNORE_PATTERNS = (".*.tmp*", ".*.partial-*")
"""Glob patterns that match every temporary name (for ``.dvcignore``)."""


def temp_name(name: str, infix: str = TEMP_INFIX) -> str:
    """``.<name>.tmp-<12 hex>``: a fresh temporary name for ``name`` (a base name)."""
    return f".{name}{infix}{uuid.uuid4().hex[:12]}"


def is_temp_name(basename: str) -> bool:
    """Whether a file or folder name is a writer's temporary name."""
    return basename.startswith(".") and (TEMP_INFIX in basename or PARTIAL_INFIX in basename)


def sweep(url: str | Path, recursive: bool = True,
          storage_options: dict[str, Any] | None = None) -> list[str]:
    """Remove every temporary file and folder under ``url`` (only its direct entries unless
    ``recursive``); returns the removed paths. Callers hold the output's lock, so none of
    them belongs to a running writer."""
    fs, root = url_to_fs(str(url), **(storage_options or {}))
    if not fs.isdir(root):
        return []
    if recursive:
        found = fs.find(root, withdirs=True, detail=True)
        entries = sorted(found.items(), key=lambda kv: kv[0].count("/"))
    else:
        entries = [(e["name"], e) for e in fs.ls(root, detail=True)]
    removed: list[str] = []
    for path, info in entries:
        path = path.rstrip("/")
        if not is_temp_name(posixpath.basename(path)):
            continue
        if any(path.startswith(done + "/") for done in removed):
            continue  # inside a temporary folder already removed
        fs.rm(path, recursive=info.get("type") == "directory")
        removed.append(path)
    return removed
