"""Segmentation metrics from one confusion matrix over a whole split (docs/algorithms.md §6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int) -> torch.Tensor:
    """Counts (C, C) int64, rows = ground truth, columns = prediction; ignore excluded.

    ``pred`` and ``target`` are integer tensors of the same shape (any, e.g. (B, H, W)).
    Target ids outside 0..C-1 other than ``ignore_index`` are excluded too.
    """
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = (t != ignore_index) & (t >= 0) & (t < num_classes)
    idx = t[keep] * num_classes + p[keep]
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class SegMetrics:
    """mIoU over classes present in ground truth or prediction; per-class IoU (NaN if absent)."""

    miou: float
    iou: tuple[float, ...]
    pixel_accuracy: float
    class_names: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "iou": {n: (None if np.isnan(v) else v) for n, v in zip(self.class_names, self.iou,
                                                                 strict=True)},
        }


def metrics_from_confusion(cm: torch.Tensor | np.ndarray,
                           class_names: Sequence[str]) -> SegMetrics:
    """IoU_c = TP / (TP + FP + FN); mIoU = mean over classes with TP + FP + FN > 0."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(denom > 0, tp / denom, np.nan)
    total = cm.sum()
    return SegMetrics(
        miou=float(np.nanmean(iou)) if np.any(denom > 0) else 0.0,
        iou=tuple(float(v) for v in iou),
        pixel_accuracy=float(tp.sum() / total) if total > 0 else 0.0,
        class_names=tuple(class_names),
    )
