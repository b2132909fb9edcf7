"""The pending selection of a round: what a person is asked to label.

A :class:`PendingSelection` holds the round, the strategy that picked the units, the class
names (ordered by id), the ignore id and one :class:`TaskUnit` per *unit*: a whole image
(``region_id == -1``, no mask) or a region of an image (``region_id >= 0``) given as a
(height, width) bool mask at the image's ORIGINAL resolution. Its file form and digest are in
:mod:`segloop.labeling.selection_file`; matching finished labels back to it in
:mod:`segloop.labeling.checks`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from segloop.errors import DataError

SELECTION_FILE = "selection.json"
FORMAT_NAME = "segloop-selection"
FORMAT_VERSION = 1
LEVELS = ("image", "region")
WHOLE_IMAGE = -1
"""``region_id`` of a unit that is the whole image."""
TO_LABEL = "to-label"
"""Name of the placeholder category/label that marks a unit still to be labelled."""


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
