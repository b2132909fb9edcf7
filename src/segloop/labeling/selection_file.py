"""``selection.json``: the pending selection (:mod:`segloop.labeling.pending`) as a file,
and its digest.

``selection.json`` is the contract between exporting a round's tasks and importing the
finished labels. It records the round, the strategy that picked the units, the class
names (ordered by id) and the ignore id, and one entry per *unit*:

* a whole image (``region_id == -1``, ``mask`` None), or
* a region of an image (``region_id >= 0``): a superpixel or SAM mask given as a
  (height, width) bool mask at the image's ORIGINAL resolution (row = y down,
  column = x right), stored in the file as COCO RLE (:mod:`segloop.data.rle`).

File layout (version 1)::

    {"format": "segloop-selection", "version": 1, "round": 3, "strategy": "entropy",
     "level": "region", "classes": ["sky", ...], "ignore_index": 255,
     "created_at": "2025-01-01T00:00:00+00:00",
     "units": [{"image_id": "...", "name": "...", "image_uri": "...", "region_id": 7,
                "height": 720, "width": 960, "mask": {"size": [720, 960], "counts": "..."}}],
     "digest": "<sha256 hex>"}

``digest`` is the sha256 of the canonical JSON (sorted keys, no whitespace, ASCII) of
every other key. Exported task files carry it, so an import can prove that the labels
belong to this very selection; :func:`read_selection` refuses a hand-edited file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from segloop.data import rle
from segloop.data.fs import join, read_bytes
from segloop.data.images import write_bytes_atomic
from segloop.errors import DataError
from segloop.labeling.pending import (
    FORMAT_NAME,
    FORMAT_VERSION,
    SELECTION_FILE,
    PendingSelection,
    TaskUnit,
)


def _unit_doc(unit: TaskUnit) -> dict[str, Any]:
    return {
        "image_id": unit.image_id,
        "name": unit.name,
        "image_uri": unit.image_uri,
        "region_id": unit.region_id,
        "height": unit.height,
        "width": unit.width,
        "mask": None if unit.mask is None else rle.encode(unit.mask),
    }


def _selection_doc(sel: PendingSelection) -> dict[str, Any]:
    """Everything of ``selection.json`` except the digest."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "round": sel.round,
        "strategy": sel.strategy,
        "level": sel.level,
        "classes": list(sel.classes),
        "ignore_index": sel.ignore_index,
        "created_at": sel.created_at,
        "units": [_unit_doc(u) for u in sel.units],
    }


def canonical_json(doc: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, ASCII."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _digest_of(doc: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def selection_digest(sel: PendingSelection) -> str:
    """sha256 hex of the canonical JSON of the selection (what ``selection.json`` records)."""
    return _digest_of(_selection_doc(sel))


def write_selection(sel: PendingSelection, out_dir: str | Path) -> Path:
    """Write ``out_dir/selection.json`` atomically (masks as COCO RLE, with the digest)."""
    doc = _selection_doc(sel)
    doc["digest"] = _digest_of(doc)
    url = join(str(out_dir), SELECTION_FILE)
    write_bytes_atomic(url, (json.dumps(doc, indent=1) + "\n").encode())
    return Path(url)


def read_selection(path: str | Path) -> PendingSelection:
    """Read and verify a ``selection.json`` (or the folder holding it)."""
    url = str(path)
    if Path(url).is_dir():
        url = join(url, SELECTION_FILE)
    doc = load_json(url, what="selection file")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise DataError(f"{url} is not a segloop selection file (no \"format\": "
                        f"\"{FORMAT_NAME}\"); point at the round's selection.json")
    version = doc.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(f"{url} has selection format version {version!r}, this segloop reads "
                        f"up to {FORMAT_VERSION}; upgrade segloop")
    stored = doc.pop("digest", None)
    if stored != _digest_of(doc):
        raise DataError(
            f"{url}: selection.json was modified after export: re-export the round "
            "(the file's digest does not match its content)"
        )
    try:
        units = tuple(_unit_from_doc(u) for u in doc["units"])
        return PendingSelection(
            round=doc["round"], strategy=doc["strategy"], level=doc["level"],
            classes=tuple(doc["classes"]), ignore_index=doc["ignore_index"], units=units,
            created_at=doc["created_at"],
        )
    except (KeyError, TypeError) as err:
        raise DataError(f"{url}: malformed selection file ({type(err).__name__}: {err}); "
                        "re-export the round") from err
    except DataError as err:
        raise DataError(f"{url}: {err}") from err


def _unit_from_doc(d: dict[str, Any]) -> TaskUnit:
    mask = None if d["mask"] is None else rle.decode(d["mask"])
    return TaskUnit(d["image_id"], d["name"], d["image_uri"], d["region_id"], d["height"],
                    d["width"], mask)


def load_json(url: str, what: str) -> Any:
    """Read and parse a JSON file, with DataErrors naming it."""
    try:
        data = read_bytes(str(url))
    except FileNotFoundError as err:
        raise DataError(f"{what} not found: {url}; check the path") from err
    except OSError as err:
        raise DataError(f"cannot read {what} {url}: {err}") from err
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{what} {url} is not valid JSON ({err}); export it again as JSON") from err


def dump_json(url: str | Path, doc: Any) -> None:
    """Write JSON atomically."""
    write_bytes_atomic(str(url), (json.dumps(doc, indent=1) + "\n").encode())


# -- matching a tool's image references back to the selection ----------------------------
