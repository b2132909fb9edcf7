"""Pseudo-label scores on a hand-computed two-image example and on perfect predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segloop.pseudolabel.evaluate import PseudoLabelEvaluator, average_precision

BG, CAT, DOG, IGN, ABS = 0, 1, 2, 255, 255
NAMES = ["background", "cat", "dog"]


def rect(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((10, 10), bool)
    m[r0:r1, c0:c1] = True
    return m


def image1() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth (10 x 10):
    O1 cat rows 0-3 cols 0-3 (16 px); O2 dog rows 6-9 cols 6-9 (16 px); a 1-px dog blob at
    (0, 9) (below min_object_area = 4: not an object); ignore rows 6-9 cols 0-3 (16 px);
    background elsewhere. Valid 84 px: cat 16, dog 17, background 51.
    """
    gt = np.zeros((10, 10), np.uint8)
    gt[0:4, 0:4] = CAT
    gt[6:10, 6:10] = DOG
    gt[0, 9] = DOG
    gt[6:10, 0:4] = IGN
    pred = np.zeros((10, 10), np.uint8)
    pred[0:4, 0:4] = CAT
    pred[6:10, :] = DOG
    pred[0:2, 8:10] = DOG
    pred[2:4, 4:10] = ABS
    # Pixels (valid only): cat->cat 16; dog->dog 16 (O2) + 1 (blob) = 17;
    # background: rows 0-1 cols 4-7 -> bg 8; (0,8),(1,8),(1,9) -> dog 3; rows 2-3 cols 4-9 ->
    # abstain 12; rows 4-5 -> bg 20; rows 6-9 cols 4-5 -> dog 8. So bg->bg 28, bg->dog 11,
    # bg->abstain 12.
    masks = np.stack([
        rect(0, 4, 0, 4),  # P1 cat 0.9 = O1: IoU 1 -> TP
        rect(0, 4, 0, 3),  # P2 cat 0.8: IoU 12/16 with O1, already matched -> FP (duplicate)
        rect(6, 10, 0, 10),  # P3 dog 0.7: 40 px, 16 ignore -> 24 valid; IoU 16/24 -> TP
        #                    (without cutting ignore pixels it would be 16/40 < 0.5)
        rect(0, 2, 8, 10),  # P4 dog 0.95: only the small blob, no object -> FP
        rect(4, 6, 0, 10),  # P5 background 0.99: excluded from mAP, not counted
    ])
    classes = np.array([CAT, CAT, DOG, DOG, BG])
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.99])
    return pred, gt, masks, classes, scores


def image2() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth: O3 cat rows 0-4 cols 0-4 (25 px); O4 cat rows 6-9 cols 6-9 (16 px,
    missed); O5 dog rows 0-3 cols 6-9 (16 px); background 43 px; no ignore.
    """
    gt = np.zeros((10, 10), np.uint8)
    gt[0:5, 0:5] = CAT
    gt[6:10, 6:10] = CAT
    gt[0:4, 6:10] = DOG
    pred = np.zeros((10, 10), np.uint8)
    pred[0:5, 0:5] = CAT
    pred[0:4, 5:10] = DOG
    pred[8:10, 0:4] = CAT
    pred[6:10, 6:10] = ABS
    # cat->cat 25, cat->abstain 16 (O4), dog->dog 16; background: rows 0-3 col 5 -> dog 4;
    # rows 8-9 cols 0-3 -> cat 8; the other 31 -> bg.
    masks = np.stack([
        rect(0, 5, 0, 5),  # Q1 cat 0.85 = O3 -> TP
        rect(0, 4, 5, 10),  # Q2 dog 0.96: IoU 16/20 with O5 -> TP
        rect(8, 10, 0, 4),  # Q3 cat 0.5 on background -> FP
    ])
    return pred, gt, masks, np.array([CAT, DOG, CAT]), np.array([0.85, 0.96, 0.5])


def evaluator() -> PseudoLabelEvaluator:
    return PseudoLabelEvaluator(NAMES, ignore_index=IGN, abstain=ABS, map_iou=0.5,
                                min_object_area=4, exclude_from_map=[BG])


def test_hand_computed_two_images() -> None:
    ev = evaluator()
    ev.update(*image1())
    ev.update(*image2())
    r = ev.result()
    # Covered confusion (rows gt, cols pred), both images:
    #   bg:  bg 28+31 = 59, cat 8, dog 11+4 = 15
    #   cat: cat 16+25 = 41;  dog: dog 17+16 = 33.  Abstained: bg 12, cat 16.
    # Covered IoU: bg 59/(59+0+23) = 59/82, cat 41/(41+8) = 41/49, dog 33/(33+15) = 33/48.
    assert r.iou_covered == pytest.approx({"background": 59 / 82, "cat": 41 / 49,
                                           "dog": 33 / 48})
    assert r.miou_covered == pytest.approx((59 / 82 + 41 / 49 + 33 / 48) / 3)
    # Overall: abstained pixels are FN of their class: bg 59/94, cat 41/65, dog unchanged.
    assert r.iou_overall == pytest.approx({"background": 59 / 94, "cat": 41 / 65,
                                           "dog": 33 / 48})
    assert r.miou_overall == pytest.approx((59 / 94 + 41 / 65 + 33 / 48) / 3)
    # Covered 156 of 84 + 100 = 184 valid pixels; 59 + 41 + 33 = 133 correct.
    assert r.coverage == pytest.approx(156 / 184)
    assert r.pixel_accuracy_covered == pytest.approx(133 / 156)
    # cat: 3 objects (O1, O3, O4). Ranked: P1 .9 TP, Q1 .85 TP, P2 .8 FP, Q3 .5 FP.
    #   recall 1/3, 2/3 at precision 1 -> AP = 2/3.
    # dog: 2 objects (O2, O5; the 1-px blob is not one). Ranked: Q2 .96 TP, P4 .95 FP,
    #   P3 .7 TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = .5*1 + .5*2/3 = 5/6.
    assert r.ap50["background"] is None
    assert r.ap50["cat"] == pytest.approx(2 / 3)
    assert r.ap50["dog"] == pytest.approx(5 / 6)
    assert r.map50 == pytest.approx(0.75)
    assert (r.images, r.gt_objects, r.predictions) == (2, 5, 7)


def test_order_of_images_does_not_matter_and_to_dict() -> None:
    ev = evaluator()
    ev.update(*image2())
    ev.update(*image1())
    d = ev.result().to_dict()
    assert d["map50"] == pytest.approx(0.75)
    assert d["ap50"] == {"background": None, "cat": pytest.approx(2 / 3),
                         "dog": pytest.approx(5 / 6)}
    assert d["coverage"] == pytest.approx(156 / 184)
    assert d["images"] == 2


def test_perfect_predictions() -> None:
    _, gt, _, _, _ = image2()
    objects = [rect(0, 5, 0, 5), rect(6, 10, 6, 10), rect(0, 4, 6, 10)]
    ev = evaluator()
    ev.update(gt.copy(), gt, np.stack(objects), np.array([CAT, CAT, DOG]),
              np.array([0.9, 0.8, 0.7]))
    r = ev.result()
    assert r.map50 == 1.0 and r.miou_covered == 1.0 and r.miou_overall == 1.0
    assert r.coverage == 1.0 and r.pixel_accuracy_covered == 1.0
    assert r.ap50 == {"background": None, "cat": 1.0, "dog": 1.0}


def test_empty_and_undefined_values_become_none() -> None:
    ev = evaluator()
    d = ev.result().to_dict()
    assert d["miou_covered"] is None and d["coverage"] is None and d["map50"] is None
    assert d["iou_overall"] == {"background": None, "cat": None, "dog": None}
    # Only background in gt, one dog prediction: dog has no objects -> AP None, no mAP.
    ev.update(np.full((10, 10), DOG, np.uint8), np.zeros((10, 10), np.uint8),
              rect(0, 5, 0, 5)[None], np.array([DOG]), np.array([0.9]))
    r = ev.result()
    assert r.map50 is None and r.ap50["dog"] is None and r.predictions == 1
    assert r.iou_covered == {"background": 0.0, "cat": None, "dog": 0.0}
    assert math.isclose(r.miou_covered, 0.0)


def test_update_rejects_bad_input() -> None:
    ev = evaluator()
    gt = np.zeros((10, 10), np.uint8)
    no_masks = (np.zeros((0, 10, 10), bool), np.zeros(0, int), np.zeros(0))
    with pytest.raises(ValueError, match="same"):
        ev.update(np.zeros((10, 9), np.uint8), gt, *no_masks)
    with pytest.raises(ValueError, match="masks must be"):
        ev.update(gt, gt, np.zeros((1, 9, 10), bool), np.array([1]), np.array([0.5]))
    with pytest.raises(ValueError, match="outside the classes"):
        ev.update(np.full((10, 10), 7, np.uint8), gt, *no_masks)
    with pytest.raises(ValueError, match="class ids"):
        ev.update(gt, gt, rect(0, 2, 0, 2)[None], np.array([3]), np.array([0.5]))
    with pytest.raises(ValueError, match="abstain"):
        PseudoLabelEvaluator(NAMES, ignore_index=IGN, abstain=1)


def test_average_precision_all_point() -> None:
    # TP, FP, TP with 4 objects: precision 1, 1/2, 2/3 at recall 1/4, 1/4, 1/2
    # -> AP = 1/4 * 1 + 1/4 * 2/3.
    ap = average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 4)
    assert ap == pytest.approx(0.25 + 0.25 * 2 / 3)
    assert average_precision(np.zeros(0), np.zeros(0, bool), 2) == 0.0
