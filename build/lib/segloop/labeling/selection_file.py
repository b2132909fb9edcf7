"""The pending selection of a round: what a person is asked to label, and its digest.

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
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from segloop.data import rle
from segloop.data.classes import ClassSpec
from segloop.data.fs import join, read_bytes
from segloop.data.images import write_bytes_atomic
from segloop.errors import ConfigError, DataError

SELECTION_FILE = "selection.json"
FORMAT_NAME = "segloop-selection"
FORMAT_VERSION = 1
LEVELS = ("image", "region")
WHOLE_IMAGE = -1
"""``region_id`` of a unit that is the whole image."""
TO_LABEL = "to-label"
"""Name of the placeholder category/label that marks a unit still to be labelled."""
_LS_UPLOAD = re.compile(r"^[0-9a-f]{8}-(.+)$")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class TaskUnit:
    """One thing to label: a whole image (``region_id`` -1, ``mask`` None) or a region.

    ``mask`` is (height, width) bool at the image's original resolution; it is stored as
    a read-only copy. Equality compares masks by value.
    """

    image_id: str
    name: str
    image_uri: str
    region_id: int
    height: int
    width: int
    mask: np.ndarray | None

    def __post_init__(self) -> None:
        where = f"unit (image {self.image_id!r}, region {self.region_id})"
        for key in ("image_id", "name", "image_uri"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise DataError(f"{where}: {key} must be a non-empty string, got {value!r}")
        for key in ("region_id", "height", "width"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise DataError(f"{where}: {key} must be an int, got {value!r}")
            object.__setattr__(self, key, int(value))
        if self.height <= 0 or self.width <= 0:
            raise DataError(f"{where}: size {self.height}x{self.width} must be positive")
        if self.region_id < WHOLE_IMAGE:
            raise DataError(f"{where}: region_id must be -1 (whole image) or >= 0")
        if self.region_id == WHOLE_IMAGE:
            if self.mask is not None:
                raise DataError(f"{where}: a whole-image unit (region_id -1) takes mask=None")
            return
        if self.mask is None:
            raise DataError(f"{where}: a region unit needs its (H, W) bool mask")
        object.__setattr__(self, "mask", _frozen_mask(self.mask, self.height, self.width, where))

    @property
    def is_whole_image(self) -> bool:
        return self.region_id == WHOLE_IMAGE

    def pixel_mask(self) -> np.ndarray:
        """The unit's (height, width) bool mask (all True for a whole image)."""
        if self.mask is None:
            return np.ones((self.height, self.width), dtype=bool)
        return self.mask

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskUnit):
            return NotImplemented
        keys = ("image_id", "name", "image_uri", "region_id", "height", "width")
        if any(getattr(self, k) != getattr(other, k) for k in keys):
            return False
        if (self.mask is None) != (other.mask is None):
            return False
        return self.mask is None or bool(np.array_equal(self.mask, other.mask))

    def __hash__(self) -> int:
        mask_key = None if self.mask is None else hashlib.sha1(self.mask.tobytes()).hexdigest()
        return hash((self.image_id, self.region_id, self.height, self.width, mask_key))


def _frozen_mask(mask: Any, h: int, w: int, where: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.shape != (h, w):
        raise DataError(
            f"{where}: mask shape {arr.shape} is not the image's original size ({h}, {w}); "
            "give region masks at the original resolution"
        )
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.max() > 1) or (
            arr.size and arr.min() < 0
        ):
            raise DataError(f"{where}: mask must be bool (or 0/1 ints), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    if not arr.any():
        raise DataError(f"{where}: the region mask is empty; drop the unit from the selection")
    arr = np.array(arr, dtype=bool, copy=True)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class ImageEntry:
    """What a selection knows about one image (shared by all its units)."""

    image_id: str
    name: str
    image_uri: str
    height: int
    width: int


@dataclass(frozen=True)
class PendingSelection:
    """A round's selection waiting for labels.

    ``classes`` are the class names ordered by id (stored as a tuple); ``level`` is
    ``"image"`` (every unit a whole image, one per image) or ``"region"``.
    """

    round: int
    strategy: str
    level: str
    classes: tuple[str, ...]
    ignore_index: int
    units: tuple[TaskUnit, ...]
    created_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "units", tuple(self.units))
        if isinstance(self.round, bool) or not isinstance(self.round, int) or self.round < 0:
            raise DataError(f"selection round must be an int >= 0, got {self.round!r}")
        if self.level not in LEVELS:
            raise DataError(f"selection level must be one of {LEVELS}, got {self.level!r}")
        if len(self.classes) < 2 or not all(isinstance(c, str) and c for c in self.classes):
            raise DataError(f"selection classes must be >= 2 non-empty names: {self.classes!r}")
        if len(set(self.classes)) != len(self.classes):
            raise DataError(f"selection class names must be unique: {self.classes!r}")
        if not 0 <= self.ignore_index <= 255 or self.ignore_index < len(self.classes):
            raise DataError(
                f"selection ignore_index {self.ignore_index} must be in "
                f"{len(self.classes)}..255 (label maps are uint8 and ids are 0..C-1)"
            )
        images: dict[str, ImageEntry] = {}
        seen: set[tuple[str, int]] = set()
        for unit in self.units:
            if not isinstance(unit, TaskUnit):
                raise DataError(f"selection units must be TaskUnit, got {type(unit).__name__}")
            key = (unit.image_id, unit.region_id)
            if key in seen:
                raise DataError(f"unit (image {unit.image_id!r}, region {unit.region_id}) "
                                "is selected twice; keep it once")
            seen.add(key)
            if self.level == "image" and not unit.is_whole_image:
                raise DataError(
                    f"image-level round {self.round}: unit of image {unit.image_id!r} has "
                    f"region {unit.region_id}; image rounds hold whole images only"
                )
            entry = ImageEntry(unit.image_id, unit.name, unit.image_uri, unit.height, unit.width)
            known = images.setdefault(unit.image_id, entry)
            if known != entry:
                raise DataError(
                    f"units of image {unit.image_id!r} disagree on name/uri/size: {known} vs "
                    f"{entry}; all units of an image must describe the same image"
                )

    @property
    def images(self) -> dict[str, ImageEntry]:
        """Selected images by id, in order of first appearance."""
        out: dict[str, ImageEntry] = {}
        for u in self.units:
            out.setdefault(u.image_id, ImageEntry(u.image_id, u.name, u.image_uri, u.height,
                                                  u.width))
        return out

    def units_of(self, image_id: str) -> list[TaskUnit]:
        """The units of one image, in selection order."""
        return [u for u in self.units if u.image_id == image_id]

    def selected_mask(self, image_id: str) -> np.ndarray:
        """(H, W) bool union of the image's selected units."""
        units = self.units_of(image_id)
        if not units:
            raise DataError(f"image {image_id!r} is not in round {self.round}'s selection")
        out = np.zeros((units[0].height, units[0].width), dtype=bool)
        for u in units:
            out |= u.pixel_mask()
        return out


# -- (de)serialisation -----------------------------------------------------------------


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


class ImageMatcher:
    """Maps what a labelling tool calls an image back to a selected image id.

    Tried in order: the segloop image id, the exact image URI, then the URI's file name,
    the unit's name and its stem; keys shared by two images are ambiguous and skipped.
    """

    def __init__(self, sel: PendingSelection) -> None:
        self.sel = sel
        self._exact: dict[str, str] = {}
        loose: dict[str, set[str]] = {}
        for entry in sel.images.values():
            self._exact[entry.image_id] = entry.image_id
            for key in _loose_keys(entry):
                loose.setdefault(key, set()).add(entry.image_id)
        uris: dict[str, set[str]] = {}
        for entry in sel.images.values():
            uris.setdefault(entry.image_uri, set()).add(entry.image_id)
        self._uri = {k: next(iter(v)) for k, v in uris.items() if len(v) == 1}
        self._loose = {k: next(iter(v)) for k, v in loose.items() if len(v) == 1}

    def match(self, image_id: str | None, refs: Iterable[str | None]) -> str | None:
        """The selected image id for a tool's image, or None if none matches."""
        if image_id is not None:
            return self._exact.get(str(image_id))
        refs = [str(r) for r in refs if r]
        for ref in refs:
            if ref in self._uri:
                return self._uri[ref]
        for ref in refs:
            base = posixpath.basename(ref.replace("\\", "/"))
            # Label Studio renames uploads to "<8 hex>-<original name>".
            upload = _LS_UPLOAD.match(base)
            for b in (base, upload.group(1) if upload else None):
                for key in (b, posixpath.splitext(b)[0]) if b else ():
                    if key in self._loose:
                        return self._loose[key]
        return None


def _loose_keys(entry: ImageEntry) -> set[str]:
    base = posixpath.basename(entry.image_uri.replace("\\", "/"))
    name = entry.name
    return {base, posixpath.splitext(base)[0], name, posixpath.splitext(name)[0],
            entry.image_id}


def short_list(items: Sequence[Any], limit: int = 5) -> str:
    """``a, b, c and 4 more`` for messages."""
    shown = ", ".join(repr(i) if isinstance(i, str) else str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# -- checks shared by the readers ----------------------------------------------------------

def check_classes(sel: PendingSelection, classes: ClassSpec) -> None:
    """Refuse a class spec that is not the one the round was exported with."""
    if tuple(classes.names) != sel.classes or classes.ignore_index != sel.ignore_index:
        raise ConfigError(
            f"round {sel.round} was exported with classes {list(sel.classes)} (ignore id "
            f"{sel.ignore_index}) but the class spec given is {list(classes.names)} (ignore id "
            f"{classes.ignore_index}); import with the round's class spec (data.classes)"
        )
    if TO_LABEL in classes.names:
        raise ConfigError(
            f"a class is named {TO_LABEL!r}, the placeholder segloop's task files use for "
            "units still to label; rename that class"
        )


def check_file_digest(found: Any, sel: PendingSelection, where: str, image: str = "",
                      found_round: Any = None) -> None:
    """Refuse a task file whose recorded selection digest is not ``sel``'s (if it has one);
    ``found_round`` (the round the file says it was exported for) names the likely cause."""
    if found is None:
        return
    expected = selection_digest(sel)
    if found != expected:
        about = f" (image {image!r})" if image else ""
        if isinstance(found_round, int) and found_round != sel.round:
            raise DataError(
                f"{where}{about}: this is round {found_round}'s file, but round {sel.round} "
                f"is the one waiting for labels; import the file exported for round "
                f"{sel.round} (`segloop labels export --out DIR` writes its tasks again)")
        raise DataError(
            f"{where}{about}: the file was exported for selection digest {str(found)[:12]}... "
            f"but round {sel.round}'s selection.json has {expected[:12]}...; the labels belong "
            "to another round or the file's segloop fields were edited: import the file "
            "exported for this round, or re-export the round and label again"
        )


def not_in_selection(where: str, ref: Any, sel: PendingSelection) -> DataError:
    return DataError(
        f"{where}: image {ref!r} is not in round {sel.round}'s selection "
        f"({len(sel.images)} images); remove it from the file, or import it with the round "
        "it was exported for"
    )


def wrong_size(where: str, image_id: str, got: tuple[int, int], sel: PendingSelection) -> DataError:
    e = sel.images[image_id]
    return DataError(
        f"{where}: image {image_id!r} ({e.name}) is labelled at {got[0]}x{got[1]} (HxW) but the "
        f"selection has it at {e.height}x{e.width}; label the original image (do not resize "
        "it in the tool) and export again"
    )
