"""Scores of pseudo-label maps against ground truth (docs/algorithms.md §6, U-SAM mAP50).

Definitions (pixels whose ground truth is ``ignore_index``, or not a class id 0..C-1, are
left out of everything):

- covered: pixels with a valid ground truth where the method did not abstain
  (pred != ``abstain``). One (C, C) confusion matrix over them, accumulated over all
  images; IoU_c = TP / (TP + FP + FN); mIoU = mean over classes with TP + FP + FN > 0
  (:func:`segloop.train.metrics.metrics_from_confusion`). ``pixel_accuracy_covered`` =
  correct covered pixels / covered pixels.
- overall: all pixels with a valid ground truth. Abstained pixels are misses: an extra
  "abstain" prediction column (not a class) adds them to FN of their ground-truth class.
- coverage = covered pixels / valid ground-truth pixels.
- mAP50 (mask level, as in the U-SAM paper): ground-truth objects are the 8-connected
  components of each class region of the ground truth with area >= ``min_object_area``
  pixels; classes in ``exclude_from_map`` (e.g. background) are skipped, and smaller
  components are not objects (a prediction on one is a false positive). Predictions are
  the kept masks with their class and confidence. IoU of a prediction with an object
  ignores the ground-truth ignore pixels (the prediction is cut to valid pixels). Per
  class, over all images in descending confidence: a prediction is a TP if its best IoU
  with a not-yet-matched object of its class in its image is >= ``map_iou`` (that object
  becomes matched), else an FP (so a duplicate of a matched object is an FP). AP = area
  under the all-point interpolated precision-recall curve (VOC 2010+); AP is 0 for a class
  with objects and no TP, None for a class without objects; mAP50 = mean AP over classes
  with at least one object (None if there are none).

Undefined scalars (nothing to measure) are NaN in :class:`PseudoLabelScores` and None in
its :meth:`~PseudoLabelScores.to_dict`. Memory is O(predictions): matches are decided per
image in :meth:`PseudoLabelEvaluator.update` (matching never crosses images, so this equals
matching in global confidence order) and only (confidence, is-TP) pairs are kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from segloop.pseudolabel.paint import ABSTAIN, mask_intersections
from segloop.train.metrics import metrics_from_confusion

_EIGHT = np.ones((3, 3), bool)


def _none_if_nan(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


@dataclass
class PseudoLabelScores:
    """Pixel and mask-level scores; see the module docstring for the definitions."""

    miou_covered: float
    miou_overall: float
    coverage: float
    pixel_accuracy_covered: float
    iou_covered: dict[str, float | None]
    iou_overall: dict[str, float | None]
    map50: float | None
    ap50: dict[str, float | None]
    images: int
    gt_objects: int
    predictions: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (NaN -> None)."""
        out = asdict(self)
        for key in ("miou_covered", "miou_overall", "coverage", "pixel_accuracy_covered",
                    "map50"):
            out[key] = _none_if_nan(out[key])
        for key in ("iou_covered", "iou_overall", "ap50"):
            out[key] = {k: _none_if_nan(v) for k, v in out[key].items()}
        return out


def average_precision(scores: np.ndarray, is_tp: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP (VOC 2010+) of predictions (n,) float / (n,) bool.

    Predictions are ranked by descending score (stable); ``n_gt`` > 0 ground-truth objects.
    """
    if n_gt <= 0:
        raise ValueError("average precision needs at least one ground-truth object")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    tp = np.asarray(is_tp, bool)[order]
    if not tp.any():
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / n_gt
    precision = ctp / np.arange(1, len(tp) + 1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


class PseudoLabelEvaluator:
    """Accumulate pixel confusions and mask matches image by image; :meth:`result` at the end.

    Args:
        class_names: the C class names, index = label-map id.
        ignore_index: ground-truth id of unlabelled pixels.
        abstain: prediction value where the method abstains (must not be a class id).
        map_iou: IoU for a TP in the mask-level AP.
        min_object_area: smallest connected component (pixels) that is a ground-truth object.
        exclude_from_map: class ids left out of the mask-level AP (e.g. background).
    """

    def __init__(self, class_names: Sequence[str], ignore_index: int, abstain: int = ABSTAIN,
                 map_iou: float = 0.5, min_object_area: int = 64,
                 exclude_from_map: Sequence[int] = ()) -> None:
        self.class_names = tuple(class_names)
        c = len(self.class_names)
        if c == 0:
            raise ValueError("class_names is empty; give the names of the label-map classes")
        if 0 <= abstain < c:
            raise ValueError(f"abstain value {abstain} is a class id (0..{c - 1}); use e.g. 255")
        if not 0.0 < map_iou <= 1.0:
            raise ValueError(f"map_iou must lie in (0, 1], got {map_iou}")
        bad = [i for i in exclude_from_map if not 0 <= i < c]
        if bad:
            raise ValueError(f"exclude_from_map ids {bad} are not class ids 0..{c - 1}")
        self.ignore_index, self.abstain = ignore_index, abstain
        self.map_iou, self.min_object_area = map_iou, min_object_area
        self.exclude = frozenset(int(i) for i in exclude_from_map)
        self._cm_covered = np.zeros((c, c), np.int64)
        self._cm_overall = np.zeros((c + 1, c + 1), np.int64)  # last column: abstain
        self._n_gt = np.zeros(c, np.int64)
        self._scores: list[list[np.ndarray]] = [[] for _ in range(c)]
        self._tp: list[list[np.ndarray]] = [[] for _ in range(c)]
        self._images = 0
        self._predictions = 0

    def _objects(self, region: np.ndarray) -> np.ndarray:
        """(m, H, W) bool: 8-connected components of ``region`` with area >= min area."""
        lab, n = ndimage.label(region, structure=_EIGHT)
        if n == 0:
            return np.zeros((0, *region.shape), bool)
        areas = np.bincount(lab.ravel(), minlength=n + 1)
        big = np.flatnonzero(areas[1:] >= self.min_object_area) + 1
        return lab[None] == big[:, None, None]

    def update(self, pred: np.ndarray, gt: np.ndarray, masks: np.ndarray,
               mask_classes: np.ndarray, mask_scores: np.ndarray) -> None:
        """Add one image.

        Args:
            pred: (H, W) uint8 pseudo-label map (``abstain`` where the method abstains).
            gt: (H, W) uint8 ground truth (``ignore_index`` = unlabelled).
            masks: (k, H, W) bool, the kept masks.
            mask_classes: (k,) int class ids of the kept masks (label-map ids).
            mask_scores: (k,) float confidences of the kept masks.
        """
        pred, gt, masks = np.asarray(pred), np.asarray(gt), np.asarray(masks)
        c = len(self.class_names)
        if pred.ndim != 2 or pred.shape != gt.shape:
            raise ValueError(f"pred {pred.shape} and gt {gt.shape} must be the same (H, W)")
        if masks.ndim != 3 or masks.shape[1:] != gt.shape:
            raise ValueError(f"masks must be (k, {gt.shape[0]}, {gt.shape[1]}), got {masks.shape}")
        mask_classes = np.asarray(mask_classes, np.int64).reshape(-1)
        mask_scores = np.asarray(mask_scores, np.float64).reshape(-1)
        if not len(mask_classes) == len(mask_scores) == len(masks):
            raise ValueError(f"{len(masks)} masks, {len(mask_classes)} classes, "
                             f"{len(mask_scores)} scores: give one class and score per mask")
        if len(mask_classes) and (mask_classes.min() < 0 or mask_classes.max() >= c):
            raise ValueError(f"mask classes must be class ids 0..{c - 1}")
        g, p = gt.astype(np.int64), pred.astype(np.int64)
        valid = (g != self.ignore_index) & (g >= 0) & (g < c)
        abstained = p == self.abstain
        covered = valid & ~abstained
        if np.any(covered & ((p < 0) | (p >= c))):
            raise ValueError(f"pred holds ids outside the classes 0..{c - 1} and abstain "
                             f"{self.abstain}")
        self._cm_covered += np.bincount(g[covered] * c + p[covered],
                                        minlength=c * c).reshape(c, c)
        p_all = np.where(abstained, c, p)
        self._cm_overall += np.bincount(g[valid] * (c + 1) + p_all[valid],
                                        minlength=(c + 1) ** 2).reshape(c + 1, c + 1)
        self._images += 1
        for k in range(c):
            if k in self.exclude:
                continue
            objects = self._objects(g == k) if np.any(g == k) else np.zeros((0, *g.shape), bool)
            self._n_gt[k] += len(objects)
            sel = np.flatnonzero(mask_classes == k)
            if not len(sel):
                continue
            self._predictions += len(sel)
            cut = masks[sel].astype(bool) & valid[None]
            inter = mask_intersections(cut, objects).astype(np.float64)
            union = (cut.sum((1, 2))[:, None] + objects.sum((1, 2))[None, :] - inter)
            iou = np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)
            matched = np.zeros(len(objects), bool)
            tp = np.zeros(len(sel), bool)
            for i in np.argsort(-mask_scores[sel], kind="stable"):
                if not len(objects):
                    break
                cand = np.where(matched, -1.0, iou[i])
                j = int(np.argmax(cand))
                if cand[j] >= self.map_iou:
                    matched[j] = tp[i] = True
            self._scores[k].append(mask_scores[sel])
            self._tp[k].append(tp)

    def result(self) -> PseudoLabelScores:
        """The scores over all images added so far."""
        names = self.class_names
        c = len(names)
        cov = metrics_from_confusion(self._cm_covered, names)
        overall = metrics_from_confusion(self._cm_overall, (*names, "<abstain>"))
        iou_cov = np.array(cov.iou, np.float64)
        iou_all = np.array(overall.iou[:c], np.float64)
        n_covered, n_valid = self._cm_covered.sum(), self._cm_overall.sum()
        ap: dict[str, float | None] = {}
        for k in range(c):
            if k in self.exclude or self._n_gt[k] == 0:
                ap[names[k]] = None
                continue
            scores = np.concatenate(self._scores[k]) if self._scores[k] else np.zeros(0)
            tp = np.concatenate(self._tp[k]) if self._tp[k] else np.zeros(0, bool)
            ap[names[k]] = average_precision(scores, tp, int(self._n_gt[k]))
        present = [v for v in ap.values() if v is not None]
        return PseudoLabelScores(
            miou_covered=_nanmean(iou_cov),
            miou_overall=_nanmean(iou_all),
            coverage=float(n_covered / n_valid) if n_valid else math.nan,
            pixel_accuracy_covered=(float(np.trace(self._cm_covered) / n_covered)
                                    if n_covered else math.nan),
            iou_covered={n: _none_if_nan(v) for n, v in zip(names, iou_cov, strict=True)},
            iou_overall={n: _none_if_nan(v) for n, v in zip(names, iou_all, strict=True)},
            map50=float(np.mean(present)) if present else None,
            ap50=ap,
            images=self._images,
            gt_objects=int(self._n_gt.sum()),
            predictions=self._predictions,
        )


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else math.nan
