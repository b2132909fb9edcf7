"""Binary masks as COCO run-length encoding (RLE), through ``pycocotools.mask``.

An RLE is ``{"size": [h, w], "counts": str}`` where ``counts`` is COCO's compressed
string (column-major runs, starting with a run of zeros). Decoding gives back the exact
bits. Every RLE is validated before pycocotools sees it, so malformed input raises a
:class:`~segloop.errors.DataError` instead of producing garbage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from segloop.errors import DataError

_MAX_CHUNKS = 12  # 60 bits per count: far beyond any real image


def encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode a (H, W) bool or uint8 (0/1) mask as ``{"size": [h, w], "counts": str}``."""
    arr = _check_masks(mask, ndim=2)
    rle = coco_mask.encode(np.asfortranarray(arr))
    return {"size": [int(arr.shape[0]), int(arr.shape[1])], "counts": rle["counts"].decode()}


def encode_many(masks: np.ndarray) -> list[dict[str, Any]]:
    """Encode (N, H, W) bool or uint8 (0/1) masks; returns N RLE dicts."""
    arr = _check_masks(masks, ndim=3)
    n, h, w = arr.shape
    if n == 0:
        return []
    rles = coco_mask.encode(np.asfortranarray(arr.transpose(1, 2, 0)))
    return [{"size": [int(h), int(w)], "counts": r["counts"].decode()} for r in rles]


def decode(rle: dict[str, Any]) -> np.ndarray:
    """Decode one RLE (counts as str, bytes or an uncompressed list) to a (H, W) bool mask."""
    coco = _to_coco(rle)
    return coco_mask.decode(coco).astype(bool)


def decode_many(rles: Sequence[dict[str, Any]], shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode RLEs of one size to (N, H, W) bool.

    ``shape`` (H, W) is only needed to give an empty input its (0, H, W) shape.
    """
    cocos = [_to_coco(r) for r in rles]
    if not cocos:
        h, w = shape if shape is not None else (0, 0)
        return np.zeros((0, h, w), dtype=bool)
    sizes = {tuple(c["size"]) for c in cocos}
    if len(sizes) > 1 or (shape is not None and sizes != {tuple(shape)}):
        raise DataError(
            f"decode_many needs RLEs of one size, got sizes {sorted(sizes)}"
            + (f" (expected {tuple(shape)})" if shape is not None else "")
            + "; decode masks of different images separately"
        )
    return coco_mask.decode(cocos).transpose(2, 0, 1).astype(bool)


def area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels."""
    return int(coco_mask.area(_to_coco(rle)))


def bbox(rle: dict[str, Any]) -> tuple[float, float, float, float]:
    """Tight box ``(x, y, w, h)`` in pixels, x to the right and y down; zeros if empty."""
    x, y, w, h = coco_mask.toBbox(_to_coco(rle)).tolist()
    return float(x), float(y), float(w), float(h)


def _check_masks(mask: np.ndarray, ndim: int) -> np.ndarray:
    arr = np.asarray(mask)
    layout = "(H, W)" if ndim == 2 else "(N, H, W)"
    if arr.ndim != ndim:
        raise DataError(
            f"a mask to encode must be {layout}, got shape {arr.shape}; "
            + ("split channels or stacks first" if arr.ndim > ndim else "add the missing axes")
        )
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype != np.uint8:
        raise DataError(
            f"a mask to encode must be bool or uint8, got dtype {arr.dtype}; pass mask.astype(bool)"
        )
    if arr.size and arr.max() > 1:
        bad = sorted(int(v) for v in np.unique(arr) if v > 1)[:10]
        raise DataError(
            f"a uint8 mask to encode must hold only 0 and 1, found values {bad}; "
            "pass (mask > 0) or (label == class_id)"
        )
    return arr


def _to_coco(rle: Any) -> dict[str, Any]:
    """Validate an RLE and return it as pycocotools wants it (counts as bytes)."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise DataError(f"an RLE must be a dict with 'size' [h, w] and 'counts', got {_short(rle)}")
    size = rle["size"]
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(v, int | np.integer) and v >= 0 for v in size)
    ):
        raise DataError(f"RLE size must be [h, w] with non-negative ints, got {_short(size)}")
    h, w = int(size[0]), int(size[1])
    counts = rle["counts"]
    if isinstance(counts, list | tuple):
        runs = np.asarray(counts)
        if runs.size and (not np.issubdtype(runs.dtype, np.integer) or runs.min() < 0):
            raise DataError(f"uncompressed RLE counts must be non-negative ints: {_short(counts)}")
        _check_total(runs, h, w)
        return coco_mask.frPyObjects({"size": [h, w], "counts": list(map(int, runs))}, h, w)
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError as err:
            raise DataError(f"RLE counts string is not ASCII: {_short(counts)}") from err
    if not isinstance(counts, bytes):
        raise DataError(
            f"RLE counts must be a str, bytes or list of ints, got {type(counts).__name__}"
        )
    _check_total(_parse_counts(counts), h, w)
    return {"size": [h, w], "counts": counts}


def _parse_counts(counts: bytes) -> np.ndarray:
    """Vectorised twin of pycocotools' ``rleFrString``: compressed string -> run lengths."""
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return c
    if c.min() < 0 or c.max() > 63:
        raise DataError(
            f"RLE counts {_short(counts)} hold characters outside COCO's alphabet "
            "('0'..'o'); the string is corrupt, re-encode the mask"
        )
    ends = np.flatnonzero((c & 0x20) == 0)
    if ends.size == 0 or ends[-1] != c.size - 1:
        raise DataError(f"RLE counts {_short(counts)} are truncated; re-encode the mask")
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > _MAX_CHUNKS:
        raise DataError(f"RLE counts {_short(counts)} hold an impossible run; re-encode the mask")
    k = np.arange(c.size) - np.repeat(starts, lengths)
    values = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    values[negative] |= np.left_shift(np.int64(-1), 5 * lengths[negative])
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])  # runs after the first two are deltas
    runs[2::2] = np.cumsum(values[2::2])
    return runs


def _check_total(runs: np.ndarray, h: int, w: int) -> None:
    if runs.size and runs.min() < 0:
        raise DataError("RLE counts decode to a negative run; the string is corrupt")
    total = int(runs.sum()) if runs.size else 0
    if total != h * w:
        raise DataError(
            f"RLE runs cover {total} pixels but size {h}x{w} has {h * w}; the counts do not "
            "belong to this size, re-encode the mask"
        )


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
