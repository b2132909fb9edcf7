"""Small seeded selections for the labelling tests, and a simulated person."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from segloop.data.classes import ClassSpec
from segloop.labeling import PendingSelection, TaskUnit

SPEC = ClassSpec(classes=["background", "road", "car"], ignore_index=255)
POLYGON = [1.0, 1.0, 8.0, 2.0, 6.0, 8.0, 2.0, 7.0]


def polygon_mask(poly: list[float], h: int, w: int) -> np.ndarray:
    rles = coco_mask.frPyObjects([poly], h, w)
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def _region_units() -> list[TaskUnit]:
    units = []
    # Image A: a grid of 4x4 "superpixels", three of them selected.
    for rid in (0, 5, 7):
        m = np.zeros((12, 16), bool)
        r, c = divmod(rid, 4)
        m[4 * r:4 * r + 4, 4 * c:4 * c + 4] = True
        units.append(TaskUnit("a0a0a0a0a0a0a0a0", "street_a.png", "pool/street_a.png", rid, 12,
                              16, m))
    # Image B: a SAM-like polygon mask and a disjoint corner mask.
    poly = polygon_mask(POLYGON, 10, 10)
    yy, xx = np.mgrid[:10, :10]
    corner = (yy >= 8) & (xx >= 7) & ~poly
    units.append(TaskUnit("b1b1b1b1b1b1b1b1", "street_b.jpg", "pool/street_b.jpg", 3, 10, 10,
                          poly))
    units.append(TaskUnit("b1b1b1b1b1b1b1b1", "street_b.jpg", "pool/street_b.jpg", 9, 10, 10,
                          corner))
    # Image C: 1xN, two regions with gaps.
    for rid, (lo, hi) in enumerate([(3, 9), (10, 20)]):
        m = np.zeros((1, 20), bool)
        m[0, lo:hi:1 if rid == 0 else 2] = True
        units.append(TaskUnit("c2c2c2c2c2c2c2c2", "line", "pool/line.png", rid, 1, 20, m))
    return units


@pytest.fixture
def spec() -> ClassSpec:
    return SPEC


@pytest.fixture
def region_sel() -> PendingSelection:
    return PendingSelection(round=3, strategy="entropy", level="region",
                            classes=SPEC.names, ignore_index=255, units=tuple(_region_units()),
                            created_at="2025-01-02T03:04:05+00:00")


@pytest.fixture
def image_sel() -> PendingSelection:
    units = [TaskUnit(f"{k}d{k}d{k}d{k}d{k}d{k}d{k}d{k}d", f"frame_{k}.png", f"pool/frame_{k}.png",
                      -1, h, w, None)
             for k, (h, w) in enumerate([(6, 8), (5, 7), (1, 9)])]
    return PendingSelection(round=1, strategy="random", level="image", classes=SPEC.names,
                            ignore_index=255, units=tuple(units),
                            created_at="2025-01-01T00:00:00+00:00")


def assign(index: int) -> int | None:
    """The simulated person: the class of the index-th unit, None = left unlabelled."""
    return None if index % 4 == 3 else index % 3


def image_level_labels(sel: PendingSelection, seed: int = 0) -> dict[str, np.ndarray]:
    """Random full label maps (with a few ignore pixels) for an image-level round."""
    rng = np.random.default_rng(seed)
    out = {}
    for sid, e in sel.images.items():
        lab = rng.integers(0, 3, (e.height, e.width)).astype(np.uint8)
        lab[0, 0] = 255
        out[sid] = lab
    return out


@pytest.fixture
def expected() -> Callable[[PendingSelection], dict[str, np.ndarray]]:
    """Label maps the simulated person's choices (``assign``) should import as."""

    def build(sel: PendingSelection) -> dict[str, np.ndarray]:
        out = {sid: np.full((e.height, e.width), 255, np.uint8) for sid, e in sel.images.items()}
        for k, unit in enumerate(sel.units):
            if assign(k) is not None:
                out[unit.image_id][unit.pixel_mask()] = assign(k)
        return out

    return build
