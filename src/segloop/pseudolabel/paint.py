"""Turn per-mask class scores into a label map (U-SAM; docs/algorithms.md §2, step 7).

Per image there are d SAM masks (one per grid point) and a (d, C) score per mask (softmax
probabilities for U-SAM, cosine similarities for SAM+CLIP; the rule is the same):

1. class = argmax of the scores, confidence = their max;
2. empty masks are never kept; the rest are candidates if confidence >= ``conf``;
3. greedy mask NMS among the candidates: in descending confidence (ties: lower index
   first), a mask is dropped if its IoU with an already kept mask is strictly greater
   than ``nms_iou`` (an IoU exactly equal to the threshold is kept);
4. the kept masks are painted in ascending confidence so the most confident one wins;
   pixels no kept mask covers get the fill value (background id, or :data:`ABSTAIN`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ABSTAIN = 255
"""Label-map value where a method abstains (no kept mask and no background class)."""

_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _flat(masks: np.ndarray, name: str) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"{name} must be (n, H, W) boolean masks, got shape {masks.shape}")
    return masks.reshape(len(masks), masks.shape[1] * masks.shape[2]).astype(bool, copy=False)


def _popcount_rows(words: np.ndarray) -> np.ndarray:
    """Set bits per row of a (n, k) uint64 array -> (n,) int64."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words).sum(1, dtype=np.int64)
    return _BYTE_POPCOUNT[words.view(np.uint8)].sum(1, dtype=np.int64)


def _pack(flat: np.ndarray) -> np.ndarray:
    """(n, P) bool -> (n, ceil(P / 64)) uint64 bit rows (zero padded)."""
    packed = np.packbits(flat, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def mask_intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel counts of pairwise intersections: a (n, H, W) bool, b (m, H, W) bool -> (n, m) int64.

    Exact integer counts from bit-packed masks (AND + popcount); memory is n * H * W / 8
    bytes, and 100 masks of 720 x 960 take about 0.15 s.
    """
    fa, fb = _flat(a, "a"), _flat(b, "b")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"mask sizes differ: {np.shape(a)[1:]} vs {np.shape(b)[1:]}")
    n, m = len(fa), len(fb)
    out = np.zeros((n, m), np.int64)
    if n == 0 or m == 0 or fa.shape[1] == 0:
        return out
    pa, pb = _pack(fa), _pack(fb)
    if n < m:
        for i in range(n):
            out[i] = _popcount_rows(pb & pa[i])
    else:
        for j in range(m):
            out[:, j] = _popcount_rows(pa & pb[j])
    return out


def mask_iou_matrix(masks: np.ndarray) -> np.ndarray:
    """Exact pairwise IoU of masks (n, H, W) bool -> (n, n) float64; empty vs empty = 0."""
    flat = _flat(masks, "masks")
    inter = mask_intersections(masks, masks).astype(np.float64)
    areas = flat.sum(1).astype(np.float64)
    union = areas[:, None] + areas[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def mask_nms(masks: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy mask NMS; returns the kept indices (int64) in visiting order.

    Args:
        masks: (n, H, W) bool.
        scores: (n,) float; visited in descending order, ties by lower index first.
        iou_threshold: a mask is dropped if its IoU with an already kept mask is ``>`` this
            (strictly: IoU exactly equal to the threshold is kept).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(masks):
        raise ValueError(f"{len(scores)} scores for {len(masks)} masks; give one per mask")
    order = np.argsort(-scores, kind="stable")
    iou = mask_iou_matrix(masks)
    kept: list[int] = []
    for i in order:
        if not kept or not np.any(iou[i, kept] > iou_threshold):
            kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)


@dataclass(frozen=True)
class MaskDecision:
    """What happened to each of the d masks of one image.

    Attributes:
        class_index: (d,) int64, argmax of the scores (column index of ``scores``).
        confidence: (d,) float32, max of the scores.
        kept: (d,) bool.
        reason: d entries, each "kept" | "low_confidence" | "nms" | "empty" (checked in the
            order empty, low_confidence, nms).
    """

    class_index: np.ndarray
    confidence: np.ndarray
    kept: np.ndarray
    reason: list[str]


def decide(scores: np.ndarray, masks: np.ndarray, conf: float, nms_iou: float) -> MaskDecision:
    """Keep masks with confidence >= ``conf`` (never empty ones), then NMS among those.

    Args:
        scores: (d, C) float scores per mask (probabilities or similarities).
        masks: (d, H, W) bool.
        conf: confidence threshold (inclusive).
        nms_iou: NMS IoU threshold (a mask is suppressed if IoU > ``nms_iou``).
    """
    scores = np.asarray(scores)
    flat = _flat(masks, "masks")
    if scores.ndim != 2 or len(scores) != len(flat) or (len(scores) and scores.shape[1] == 0):
        raise ValueError(
            f"scores must be (d, C) with C >= 1 and d = {len(flat)} masks, got {scores.shape}"
        )
    d = len(flat)
    if d == 0:
        return MaskDecision(np.zeros(0, np.int64), np.zeros(0, np.float32),
                            np.zeros(0, bool), [])
    class_index = scores.argmax(1).astype(np.int64)
    confidence = scores.max(1).astype(np.float32)
    empty = ~flat.any(1)
    confident = confidence >= np.float32(conf)
    candidates = np.flatnonzero(~empty & confident)
    kept = np.zeros(d, bool)
    if len(candidates):
        keep = mask_nms(np.asarray(masks)[candidates], confidence[candidates], nms_iou)
        kept[candidates[keep]] = True
    reason = [
        "empty" if empty[i] else "low_confidence" if not confident[i]
        else "kept" if kept[i] else "nms"
        for i in range(d)
    ]
    return MaskDecision(class_index, confidence, kept, reason)


def paint(masks: np.ndarray, labels: np.ndarray, confidence: np.ndarray, fill: int) -> np.ndarray:
    """Paint kept masks into a (H, W) uint8 label map, the most confident mask on top.

    Args:
        masks: (k, H, W) bool, the kept masks.
        labels: (k,) int ids to paint (already mapped to label-map ids, 0..255).
        confidence: (k,) float; painted in ascending order, stable (for equal confidence the
            later index is painted later, so it wins).
        fill: id where no mask covers (background id, or :data:`ABSTAIN`).
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (k, H, W) booleans, got shape {masks.shape}")
    labels = np.asarray(labels).reshape(-1)
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if not len(labels) == len(confidence) == len(masks):
        raise ValueError(f"{len(masks)} masks, {len(labels)} labels and {len(confidence)} "
                         "confidences: give one label and one confidence per mask")
    if len(labels) and (labels.min() < 0 or labels.max() > 255) or not 0 <= fill <= 255:
        raise ValueError("label ids and fill must lie in 0..255 (label maps are uint8)")
    out = np.full(masks.shape[1:], fill, np.uint8)
    for i in np.argsort(confidence, kind="stable"):
        out[masks[i].astype(bool, copy=False)] = labels[i]
    return out
