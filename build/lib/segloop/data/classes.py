"""Class specifications: which ids a label map may hold, their names and colours.

A label map is a (H, W) uint8 array of class ids ``0..C-1`` plus one ``ignore_index``
(pixels left out of the loss and the metrics). :class:`ClassSpec` is a frozen pydantic
model so it can sit directly inside the project's config.
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from segloop.errors import DataError

_MAX_LISTED = 10


class ClassInfo(BaseModel):
    """One class: its name, its id in label maps and an optional RGB display colour."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    id: int
    color: tuple[int, int, int] | None = None

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("class name must not be empty; give every class a name")
        return value

    @field_validator("id")
    @classmethod
    def _id_in_range(cls, value: int) -> int:
        if not 0 <= value <= 254:
            raise ValueError(
                f"class id {value} is outside 0..254; label maps are uint8 and ids must "
                "be numbered 0..C-1"
            )
        return value

    @field_validator("color")
    @classmethod
    def _color_in_range(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and any(not 0 <= c <= 255 for c in value):
            raise ValueError(f"colour {value} has a component outside 0..255; use 8-bit RGB")
        return value


class ClassSpec(BaseModel):
    """The classes of a dataset: ids exactly ``0..C-1`` (any order), unique names.

    ``classes`` may also be given as a plain list of names (YAML ``[cat, dog]``): ids
    are then assigned in list order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: tuple[ClassInfo, ...]
    ignore_index: int = 255

    @model_validator(mode="before")
    @classmethod
    def _names_to_infos(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("classes"), list | tuple):
            items = data["classes"]
            if items and all(isinstance(item, str) for item in items):
                data = {**data, "classes": [{"name": n, "id": i} for i, n in enumerate(items)]}
        return data

    @model_validator(mode="after")
    def _check(self) -> ClassSpec:
        n = len(self.classes)
        if n < 2:
            raise ValueError(
                f"a class spec needs at least 2 classes, got {n}; add the background or "
                "'other' class too"
            )
        ids = sorted(c.id for c in self.classes)
        if ids != list(range(n)):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            missing = sorted(set(range(n)) - set(ids))
            raise ValueError(
                f"class ids must be exactly 0..{n - 1} (unique, no gaps), got {ids}"
                + (f"; duplicated: {dupes}" if dupes else "")
                + (f"; missing: {missing}" if missing else "")
                + "; renumber the classes"
            )
        names = [c.name for c in self.classes]
        dupes = sorted({x for x in names if names.count(x) > 1})
        if dupes:
            raise ValueError(f"class names must be unique, repeated: {dupes}; rename them")
        if not 0 <= self.ignore_index <= 255:
            raise ValueError(
                f"ignore_index {self.ignore_index} is outside 0..255 (label maps are uint8); "
                "use 255"
            )
        if self.ignore_index < n:
            raise ValueError(
                f"ignore_index {self.ignore_index} is also the id of class "
                f"{self.by_id[self.ignore_index].name!r}; use an id >= {n} such as 255"
            )
        return self

    @property
    def by_id(self) -> dict[int, ClassInfo]:
        """Classes keyed by id."""
        return {c.id: c for c in self.classes}

    @property
    def names(self) -> tuple[str, ...]:
        """Class names ordered by id."""
        return tuple(c.name for c in sorted(self.classes, key=lambda c: c.id))

    @property
    def num_classes(self) -> int:
        """Number of classes C (the ignore id not counted)."""
        return len(self.classes)

    @property
    def colors(self) -> np.ndarray:
        """Palette: (256, 3) uint8 RGB, indexable by label id (``colors[label]``).

        Classes without a colour get a fixed, well-spread hue; the ignore id and every
        unused id are black.
        """
        palette = np.zeros((256, 3), dtype=np.uint8)
        for info in self.classes:
            palette[info.id] = info.color if info.color is not None else _auto_color(info.id)
        return palette

    def check_label(self, label: np.ndarray, where: str) -> None:
        """Raise DataError unless ``label`` (H, W) holds only class ids and the ignore id.

        ``where`` names the label (file or URL) in the message.
        """
        label = np.asarray(label)
        if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
            raise DataError(
                f"{where}: a label must be a (H, W) integer id map, got shape {label.shape} "
                f"dtype {label.dtype}; save labels as single-channel PNGs of class ids"
            )
        if label.dtype == np.uint8:
            present = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
        else:
            present = np.unique(label)
        in_range = (present >= 0) & (present < self.num_classes)
        valid = in_range | (present == self.ignore_index)
        bad = present[~valid]
        if bad.size:
            listed = ", ".join(str(int(v)) for v in bad[:_MAX_LISTED])
            more = f" and {bad.size - _MAX_LISTED} more" if bad.size > _MAX_LISTED else ""
            raise DataError(
                f"{where}: label ids {listed}{more} are not in the class spec (valid ids "
                f"0..{self.num_classes - 1}, ignore id {self.ignore_index}); fix the label "
                "file or add the classes to data.classes"
            )


def _auto_color(index: int) -> tuple[int, int, int]:
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


_CAMVID_CLASSES = (
    ("sky", (128, 128, 128)),
    ("building", (128, 0, 0)),
    ("pole", (192, 192, 128)),
    ("road", (128, 64, 128)),
    ("pavement", (60, 40, 222)),
    ("tree", (128, 128, 0)),
    ("signsymbol", (192, 128, 128)),
    ("fence", (64, 64, 128)),
    ("car", (64, 0, 128)),
    ("pedestrian", (64, 64, 0)),
    ("bicyclist", (0, 128, 192)),
)

CAMVID = ClassSpec(
    classes=tuple(
        ClassInfo(name=name, id=i, color=color) for i, (name, color) in enumerate(_CAMVID_CLASSES)
    ),
    ignore_index=11,
)
"""The 11 SegNet CamVid classes, ignore id 11 ("unlabelled")."""

_VOC_CLASSES = (
    ("background", (0, 0, 0)),
    ("aeroplane", (128, 0, 0)),
    ("bicycle", (0, 128, 0)),
    ("bird", (128, 128, 0)),
    ("boat", (0, 0, 128)),
    ("bottle", (128, 0, 128)),
    ("bus", (0, 128, 128)),
    ("car", (128, 128, 128)),
    ("cat", (64, 0, 0)),
    ("chair", (192, 0, 0)),
    ("cow", (64, 128, 0)),
    ("diningtable", (192, 128, 0)),
    ("dog", (64, 0, 128)),
    ("horse", (192, 0, 128)),
    ("motorbike", (64, 128, 128)),
    ("person", (192, 128, 128)),
    ("pottedplant", (0, 64, 0)),
    ("sheep", (128, 64, 0)),
    ("sofa", (0, 192, 0)),
    ("train", (128, 192, 0)),
    ("tvmonitor", (0, 64, 128)),
)

VOC = ClassSpec(
    classes=tuple(
        ClassInfo(name=name, id=i, color=color) for i, (name, color) in enumerate(_VOC_CLASSES)
    ),
    ignore_index=255,
)
"""The 21 PASCAL VOC 2012 classes (0 background, 1..20 objects) with the standard VOC
colormap colours; ignore id 255 (the void border)."""

BUILTIN_CLASSES: dict[str, ClassSpec] = {"camvid": CAMVID, "voc": VOC}


def resolve_classes(value: str | ClassSpec | dict) -> ClassSpec:
    """Turn a built-in name (``"camvid"``, ``"voc"``), a dict or a ClassSpec into a ClassSpec."""
    if isinstance(value, ClassSpec):
        return value
    if isinstance(value, str):
        spec = BUILTIN_CLASSES.get(value.strip().lower())
        if spec is None:
            raise DataError(
                f"unknown class spec {value!r}; use one of the built-ins "
                f"{sorted(BUILTIN_CLASSES)} or write the classes out as a list of "
                "{name, id, color} entries"
            )
        return spec
    if isinstance(value, dict):
        try:
            return ClassSpec.model_validate(value)
        except ValueError as err:
            raise DataError(f"invalid class spec {value!r}: {err}") from err
    raise DataError(
        f"a class spec must be a built-in name, a dict or a ClassSpec, got "
        f"{type(value).__name__} {value!r}"
    )
