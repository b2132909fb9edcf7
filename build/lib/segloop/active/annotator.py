"""A simulated annotator that answers queries from the ground truth.

Label maps are (H, W) uint8 class ids with ``ignore_index`` for "no label". Modes:

- ``"exact"``: the annotator traces the region exactly (copies the ground truth there).
- ``"dominant"``: one click gives the whole region its most frequent non-ignore class
  (Cai et al., CVPR 2021); ties go to the smallest class id; a region holding only
  ignore pixels stays ignore.

Image-level queries (region id -1) always give exact labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from segloop.errors import ConfigError, DataError

Mode = Literal["dominant", "exact"]
MODES: tuple[str, ...] = ("dominant", "exact")


def _check(gt: np.ndarray, mode: str, ignore_index: int) -> np.ndarray:
    if mode not in MODES:
        raise ConfigError(f"unknown annotation mode {mode!r}; use one of {', '.join(MODES)}")
    if not 0 <= ignore_index <= 255:
        raise ConfigError(f"ignore_index must be in 0..255 for uint8 labels, got {ignore_index}")
    g = np.asarray(gt)
    if g.ndim != 2 or g.dtype != np.uint8:
        raise DataError(f"gt must be an (H, W) uint8 label map, got {g.dtype} {g.shape}")
    return g


def annotate_image(gt: np.ndarray, ignore_index: int) -> np.ndarray:
    """Label a whole image: a copy of the (H, W) uint8 ground truth."""
    return _check(gt, "exact", ignore_index).copy()


def annotate_units(
    gt: np.ndarray,
    regions: np.ndarray,
    region_ids: Sequence[int],
    mode: Mode,
    ignore_index: int,
    into: np.ndarray | None = None,
) -> np.ndarray:
    """Label several regions of one image at once.

    ``gt`` (H, W) uint8, ``regions`` (H, W) integer ids >= 0, ``region_ids`` the regions
    to label (-1 = the whole image, labelled exactly; it then supersedes the regions).
    Labels are painted into a copy of ``into`` ((H, W) uint8, e.g. the labels of earlier
    rounds) or into a fresh map filled with ``ignore_index``; pixels outside the chosen
    regions keep their value. Returns the (H, W) uint8 map.
    """
    g = _check(gt, mode, ignore_index)
    r = np.asarray(regions)
    if r.shape != g.shape or not np.issubdtype(r.dtype, np.integer):
        raise DataError(
            f"regions must be an integer map of shape {g.shape}, got {r.dtype} {r.shape}"
        )
    if into is None:
        out = np.full(g.shape, ignore_index, dtype=np.uint8)
    else:
        if into.shape != g.shape or into.dtype != np.uint8:
            raise DataError(
                f"into must be a {g.shape} uint8 label map, got {into.dtype} {into.shape}"
            )
        out = into.copy()
    ids = np.asarray(list(region_ids), dtype=np.int64)
    if ids.size == 0:
        return out
    if -1 in ids:
        out[...] = g
        return out
    num = int(r.max()) + 1 if r.size else 0
    if int(r.min(initial=0)) < 0 or ids.min() < -1 or ids.max() >= num:
        raise DataError(
            f"region ids must lie in 0..{num - 1} (or -1 = whole image) and the "
            f"region map must be >= 0; got ids {ids.min()}..{ids.max()}"
        )
    chosen = np.zeros(num, dtype=bool)
    chosen[ids] = True
    pix = chosen[r]
    if mode == "exact":
        out[pix] = g[pix]
        return out
    rr = r[pix].astype(np.int64)
    gg = g[pix].astype(np.int64)
    keep = gg != ignore_index
    counts = np.bincount(rr[keep] * 256 + gg[keep], minlength=num * 256).reshape(num, 256)
    dominant = np.where(counts.any(axis=1), counts.argmax(axis=1), ignore_index)
    out[pix] = dominant.astype(np.uint8)[rr]
    return out


def annotate_region(gt: np.ndarray, mask: np.ndarray, mode: Mode, ignore_index: int) -> np.ndarray:
    """Label one region given as an (H, W) bool ``mask``: ignore outside, inside the
    ground truth ("exact") or its dominant non-ignore class ("dominant")."""
    m = np.asarray(mask)
    if m.dtype != bool or m.shape != np.shape(gt):
        raise DataError(
            f"mask must be a bool array of shape {np.shape(gt)}, got {m.dtype} {m.shape}"
        )
    ids = [1] if m.any() else []
    return annotate_units(gt, m.astype(np.int64), ids, mode, ignore_index)
