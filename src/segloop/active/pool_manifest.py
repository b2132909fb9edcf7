"""The pool manifest (table ``pool_manifest``): one row per cached image, in cache order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segloop.data.parquet import read_table, write_table
from segloop.data.schemas import POOL_MANIFEST


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the rows (dicts with the table's columns) to ``path`` (atomically)."""
    write_table(str(path), POOL_MANIFEST, rows)


def read_manifest(path: Path, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """The manifest's rows in index order (``columns``: only these)."""
    return read_table(str(path), POOL_MANIFEST, columns=columns).to_pylist()
