"""Mask IoU, mask NMS, keep decisions and painting on constructed rectangles."""

from __future__ import annotations

import numpy as np
import pytest

from segloop.pseudolabel import paint as paint_mod
from segloop.pseudolabel.paint import (
    ABSTAIN,
    decide,
    mask_intersections,
    mask_iou_matrix,
    mask_nms,
    paint,
)


def rect(r0: int, r1: int, c0: int, c1: int, shape: tuple[int, int] = (10, 10)) -> np.ndarray:
    """Bool mask with rows r0:r1 and columns c0:c1 set."""
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def brute_iou(masks: np.ndarray) -> np.ndarray:
    n = len(masks)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            union = np.logical_or(masks[i], masks[j]).sum()
            out[i, j] = np.logical_and(masks[i], masks[j]).sum() / union if union else 0.0
    return out


def test_mask_iou_matrix_matches_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((7, 13, 17)) < 0.4
    masks[2] = False  # empty
    masks[5] = masks[1]  # duplicate
    expected = brute_iou(masks)
    got = mask_iou_matrix(masks)
    assert got.dtype == np.float64 and got.shape == (7, 7)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert got[2, 2] == 0.0 and got[1, 5] == 1.0
    # The byte lookup-table popcount (numpy < 2) gives the same counts.
    monkeypatch.delattr(paint_mod.np, "bitwise_count", raising=False)
    np.testing.assert_allclose(mask_iou_matrix(masks), expected, rtol=0, atol=1e-12)


def test_mask_iou_known_rectangles() -> None:
    a, b = rect(0, 4, 0, 4), rect(0, 4, 0, 2)  # 16 px, 8 px subset -> IoU 0.5
    c = rect(0, 5, 1, 6)  # 25 px; with a: inter rows 0-3 cols 1-3 = 12, union 16+25-12 = 29
    iou = mask_iou_matrix(np.stack([a, b, c]))
    assert iou[0, 1] == 0.5
    assert iou[0, 2] == pytest.approx(12 / 29)
    np.testing.assert_array_equal(
        mask_intersections(np.stack([a, b]), np.stack([c])), [[12], [4]])
    np.testing.assert_array_equal(
        mask_intersections(np.stack([c]), np.stack([a, b])), [[12, 4]])


def nms_masks() -> np.ndarray:
    return np.stack([
        rect(0, 4, 0, 4),  # 0: 16 px
        rect(0, 4, 0, 2),  # 1: 8 px, IoU with 0 exactly 0.5
        rect(6, 10, 6, 10),  # 2: disjoint
        rect(0, 4, 0, 4),  # 3: duplicate of 0 (IoU 1), same score as 0
    ])


def test_nms_keeps_iou_equal_to_threshold_and_orders_by_score() -> None:
    scores = np.array([0.6, 0.9, 0.8, 0.6])
    # Visit order 1, 2, 0, 3 (0 before 3: tie, lower index first). 0 vs 1 IoU = 0.5 is not
    # > 0.5, so 0 stays; 3 duplicates 0 (IoU 1) and goes.
    kept = mask_nms(nms_masks(), scores, 0.5)
    assert kept.dtype == np.int64
    assert kept.tolist() == [1, 2, 0]
    # Just below 0.5: 0 (IoU 0.5 with 1) and 3 (IoU 0.5 with 1) are suppressed.
    assert mask_nms(nms_masks(), scores, 0.49).tolist() == [1, 2]


def test_nms_ties_lower_index_first() -> None:
    masks = nms_masks()
    assert mask_nms(masks, np.array([0.5, 0.1, 0.1, 0.5]), 0.7).tolist() == [0, 1, 2]
    # Same tie with index 3 made the winner only if its score is higher.
    assert mask_nms(masks, np.array([0.5, 0.1, 0.1, 0.51]), 0.7).tolist() == [3, 1, 2]
    disjoint = np.stack([rect(0, 2, 0, 2), rect(3, 5, 3, 5), rect(6, 8, 6, 8)])
    assert mask_nms(disjoint, np.ones(3), 0.0).tolist() == [0, 1, 2]
    assert mask_nms(np.zeros((0, 4, 4), bool), np.zeros(0), 0.7).tolist() == []
    with pytest.raises(ValueError, match="scores"):
        mask_nms(disjoint, np.ones(2), 0.7)


def test_decide_reasons() -> None:
    masks = np.stack([
        rect(0, 4, 0, 4),  # 0: class 1, conf 0.8 -> kept
        np.zeros((10, 10), bool),  # 1: conf 0.9 but empty -> empty
        rect(6, 10, 6, 10),  # 2: conf 0.4 -> low_confidence
        rect(0, 4, 0, 4),  # 3: duplicate of 0, conf 0.7 -> nms
        rect(0, 4, 0, 2),  # 4: conf exactly 0.5 (>= conf), IoU 0.5 with 0 <= 0.7 -> kept
        rect(6, 10, 6, 10),  # 5: conf 0.3, all-low scores -> low_confidence
    ])
    scores = np.array([
        [0.1, 0.8, 0.1],
        [0.9, 0.05, 0.05],
        [0.4, 0.3, 0.3],
        [0.2, 0.1, 0.7],
        [0.25, 0.25, 0.5],
        [0.3, 0.3, 0.3],
    ])
    dec = decide(scores, masks, conf=0.5, nms_iou=0.7)
    assert dec.reason == ["kept", "empty", "low_confidence", "nms", "kept", "low_confidence"]
    assert dec.kept.tolist() == [True, False, False, False, True, False]
    assert dec.class_index.dtype == np.int64
    assert dec.class_index.tolist() == [1, 0, 0, 2, 2, 0]
    assert dec.confidence.dtype == np.float32
    np.testing.assert_allclose(dec.confidence, [0.8, 0.9, 0.4, 0.7, 0.5, 0.3], rtol=1e-6)


def test_decide_empty_mask_suppresses_nothing_and_no_masks() -> None:
    masks = np.stack([np.zeros((4, 4), bool), rect(0, 2, 0, 2, (4, 4))])
    dec = decide(np.array([[0.0, 1.0], [0.2, 0.8]]), masks, 0.5, 0.0)
    assert dec.reason == ["empty", "kept"]
    none = decide(np.zeros((0, 3)), np.zeros((0, 4, 4), bool), 0.5, 0.7)
    assert none.reason == [] and none.kept.shape == (0,)
    with pytest.raises(ValueError, match="scores"):
        decide(np.zeros((1, 3)), masks, 0.5, 0.7)


def test_paint_most_confident_wins_regardless_of_order() -> None:
    a, b = rect(0, 5, 0, 5), rect(2, 7, 2, 7)  # overlap rows 2-4, cols 2-4
    out = paint(np.stack([a, b]), np.array([1, 2]), np.array([0.9, 0.6]), fill=0)
    assert out.dtype == np.uint8 and out.shape == (10, 10)
    assert out[3, 3] == 1  # overlap: a is more confident
    assert out[6, 6] == 2 and out[0, 0] == 1
    assert out[9, 9] == 0 and out[0, 9] == 0
    swapped = paint(np.stack([b, a]), np.array([2, 1]), np.array([0.6, 0.9]), fill=0)
    np.testing.assert_array_equal(out, swapped)
    flipped = paint(np.stack([a, b]), np.array([1, 2]), np.array([0.6, 0.9]), fill=0)
    assert flipped[3, 3] == 2
    expected_counts = {0: 100 - 41, 1: 25 - 9, 2: 25}
    assert {int(v): int(c) for v, c in zip(*np.unique(flipped, return_counts=True),
                                           strict=True)} == expected_counts


def test_paint_ties_fill_and_errors() -> None:
    a, b = rect(0, 5, 0, 5), rect(2, 7, 2, 7)
    tie = paint(np.stack([a, b]), np.array([1, 2]), np.array([0.5, 0.5]), fill=ABSTAIN)
    assert tie[3, 3] == 2  # equal confidence: the later index is painted later
    assert tie[9, 9] == ABSTAIN == 255
    empty = paint(np.zeros((0, 3, 4), bool), np.zeros(0, int), np.zeros(0), fill=7)
    assert empty.shape == (3, 4) and np.all(empty == 7) and empty.dtype == np.uint8
    with pytest.raises(ValueError, match="one label"):
        paint(np.stack([a, b]), np.array([1]), np.array([0.5, 0.5]), fill=0)
    with pytest.raises(ValueError, match="0..255"):
        paint(np.stack([a]), np.array([300]), np.array([0.5]), fill=0)
