"""Which classes a method predicts and which ids they get in the target's label maps.

A method predicts its own labels (the synthetic dataset's labels for U-SAM, class names for
SAM+CLIP). Label maps use the ids of ``data.classes`` (the target dataset's classes), so
pseudo-labels can be scored against its ground truth and fed to the active-learning loop.
A label maps to the class of the same name (case-insensitively) unless
``pseudolabel.class_map`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segloop.config import Config
from segloop.data.classes import ClassSpec
from segloop.errors import ConfigError
from segloop.pseudolabel.paint import ABSTAIN

__all__ = ["ABSTAIN", "LabelMapping", "map_labels", "sam_clip_labels", "maskdiffusion_labels",
           "background_id"]



@dataclass(frozen=True)
class LabelMapping:
    """Method labels -> target class ids.

    Attributes:
        labels: the method's C labels, in its output order.
        class_ids: (C,) int64 ids in ``data.classes``.
        background: the id painted where no mask is kept, or None (then :data:`ABSTAIN`).
        spec: the target class spec.
    """

    labels: tuple[str, ...]
    class_ids: np.ndarray
    background: int | None
    spec: ClassSpec

    @property
    def fill(self) -> int:
        return ABSTAIN if self.background is None else self.background

    def to_dict(self) -> dict[str, Any]:
        names = {c.id: c.name for c in self.spec.classes}
        return {
            "labels": {label: {"id": int(i), "class": names[int(i)]}
                       for label, i in zip(self.labels, self.class_ids, strict=True)},
            "background": None if self.background is None else {
                "id": self.background, "class": names[self.background]},
            "abstain": ABSTAIN,
        }


def _find(spec: ClassSpec, name: str) -> int | None:
    wanted = name.strip().lower()
    for c in spec.classes:
        if c.name.strip().lower() == wanted:
            return c.id
    return None


def background_id(spec: ClassSpec, background: str | None) -> int | None:
    """The id of ``pseudolabel.background`` in ``spec`` (``auto``: a class named
    "background" if there is one, else None)."""
    if background is None:
        return None
    if background == "auto":
        return _find(spec, "background")
    found = _find(spec, background)
    if found is None:
        raise ConfigError(f"pseudolabel.background: {background!r} is not a class of "
                          f"data.classes ({[c.name for c in spec.classes]}); use one of "
                          "them, auto, or null to abstain where no mask is kept")
    return found


def map_labels(labels: Sequence[str], spec: ClassSpec, class_map: Mapping[str, str],
               background: str | None) -> LabelMapping:
    """Map each label to a ``spec`` id (``class_map`` first, then the same name)."""
    stray = sorted(set(class_map) - set(labels))
    if stray:
        raise ConfigError(f"pseudolabel.class_map: {stray} are not labels of this method "
                          f"(labels: {list(labels)})")
    ids = []
    for label in labels:
        target = class_map.get(label, label)
        found = _find(spec, target)
        if found is None:
            raise ConfigError(
                f"label {label!r} has no class {target!r} in data.classes "
                f"({[c.name for c in spec.classes]}): add it to pseudolabel.class_map "
                f"(e.g. class_map: {{{label}: <class name>}}) or to data.classes")
        ids.append(found)
    return LabelMapping(tuple(labels), np.asarray(ids, np.int64),
                        background_id(spec, background), spec)


def sam_clip_labels(cfg: Config) -> tuple[str, ...]:
    """SAM+CLIP's labels: ``pseudolabel.classes``, else synth.classes' labels, else the
    target's class names without its background class."""
    if cfg.pseudolabel.classes:
        return tuple(cfg.pseudolabel.classes)
    if cfg.synth.classes:
        return tuple(c.label for c in cfg.synth.classes)
    spec = cfg.data.classes
    bg = background_id(spec, cfg.pseudolabel.background)
    return tuple(c.name for c in sorted(spec.classes, key=lambda c: c.id) if c.id != bg)


def maskdiffusion_labels(cfg: Config) -> tuple[str, ...]:
    """MaskDiffusion's labels (the class names in its prompt): ``pseudolabel.classes``, else
    every class of the target (its background class included: MaskDiffusion gives every
    pixel the most similar class, so the background needs a name of its own)."""
    if cfg.pseudolabel.classes:
        return tuple(cfg.pseudolabel.classes)
    return tuple(c.name for c in sorted(cfg.data.classes.classes, key=lambda c: c.id))
