"""The synthetic dataset folder: images, per-batch manifest parts, compaction, resume state.

Layout of ``<out>`` (``data/synthetic/<dataset>`` in the workspace)::

    synth.json                         settings every image was made with
    manifest.parquet                   table synthetic_manifest (all accepted images)
    rejects.parquet                    table synthetic_rejects (kept out by the CLIP filter)
    <label>/<image_id>.png             accepted images
    _rejects/<label>/<image_id>.png    rejected images, for inspection
    _parts/<kind>-<label>-<index>.parquet   one batch's rows until compaction

A batch writes its PNGs first (each atomically), then its part files: a part file is the
batch's commit point. A job is *done* when its (label, index) is in a manifest, rejects
table or part. :func:`compact` folds the parts into the two tables (atomically) and then
deletes them, so a run killed at any point loses at most the batch it was writing; a kill
between the two leaves rows both in a table and in a part, which reading keeps once.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from segloop.data import temp_files
from segloop.data.fs import join, url_to_fs
from segloop.data.parquet import read_table, write_table
from segloop.data.schemas import MANIFEST_FILE, SYNTHETIC_MANIFEST, SYNTHETIC_REJECTS
from segloop.faults import kill_point

REJECTS_FILE = "rejects.parquet"
SETTINGS_FILE = "synth.json"
PARTS = "_parts"
REJECTS_DIR = "_rejects"
_TABLES = {"manifest": (SYNTHETIC_MANIFEST, MANIFEST_FILE),
           "rejects": (SYNTHETIC_REJECTS, REJECTS_FILE)}


def part_url(out: str, kind: str, label_dir: str, first_index: int) -> str:
    """URL of the part file of one batch (``kind``: "manifest" or "rejects")."""
    return join(out, PARTS, f"{kind}-{label_dir}-{first_index:06d}.parquet")


def write_parts(out: str, label_dir: str, first_index: int,
                accepted: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]]) -> None:
    """Commit one batch's rows (rejects first, then the manifest part)."""
    for kind, rows in (("rejects", rejected), ("manifest", accepted)):
        if rows:
            table, _ = _TABLES[kind]
            write_table(part_url(out, kind, label_dir, first_index), table, list(rows))


def _read(out: str, kind: str, columns: list[str] | None = None) -> pa.Table:
    """The compacted table plus every part of ``kind`` (empty if none)."""
    table, file_name = _TABLES[kind]
    fs, root = url_to_fs(out)
    pieces = []
    whole = posixpath.join(root.rstrip("/"), file_name)
    if fs.exists(whole):
        pieces.append(read_table(join(out, file_name), table, columns=columns))
    parts_dir = posixpath.join(root.rstrip("/"), PARTS)
    if fs.exists(parts_dir):
        for path in sorted(fs.find(parts_dir)):
            base = posixpath.basename(path)
            if base.startswith(f"{kind}-") and base.endswith(".parquet"):
                pieces.append(read_table(join(out, PARTS, base), table, columns=columns))
    if not pieces:
        from segloop.data.schemas import get_schema

        empty = get_schema(table).arrow.empty_table()
        return empty.select(columns) if columns else empty
    return _unique_jobs(pa.concat_tables(pieces))


def _unique_jobs(table: pa.Table) -> pa.Table:
    """First row of each (label, index): a run killed after compaction wrote the table but
    before it deleted the parts leaves their rows twice; they are the same rows."""
    if "label" not in table.column_names or "index" not in table.column_names:
        return table
    seen: set[tuple[str, int]] = set()
    keep = []
    for key in zip(table.column("label").to_pylist(), table.column("index").to_pylist(),
                   strict=True):
        keep.append(key not in seen)
        seen.add(key)
    return table if all(keep) else table.filter(pa.array(keep))


def done_jobs(out: str) -> set[tuple[str, int]]:
    """(label, index) of every job already generated (accepted or rejected)."""
    done: set[tuple[str, int]] = set()
    for kind in _TABLES:
        t = _read(out, kind, ["label", "index"])
        done.update(zip(t.column("label").to_pylist(), t.column("index").to_pylist(),
                        strict=True))
    return done


def compact(out: str) -> dict[str, int]:
    """Fold the parts into manifest.parquet and rejects.parquet; returns row counts."""
    fs, root = url_to_fs(out)
    counts = {}
    for kind, (table, file_name) in _TABLES.items():
        data = _read(out, kind)
        if data.num_rows:
            data = data.sort_by([("class_index", "ascending"), ("index", "ascending")])
            write_table(join(out, file_name), table, data)
        counts[kind] = data.num_rows
    kill_point("synth.compact.tables")
    parts_dir = posixpath.join(root.rstrip("/"), PARTS)
    if fs.exists(parts_dir):
        fs.rm(parts_dir, recursive=True)
    return counts


def sweep(out: str) -> list[str]:
    """Delete temporary files of killed writers under ``out``; returns them."""
    return temp_files.sweep(out)


def read_manifest(out: str) -> pa.Table:
    """Accepted images (compacted table plus parts)."""
    return _read(out, "manifest")


def read_rejects(out: str) -> pa.Table:
    """Rejected images (compacted table plus parts)."""
    return _read(out, "rejects")
