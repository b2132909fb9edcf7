"""U-SAM losses and rules (Kundu et al.; docs/algorithms.md §2, steps 4-6): pure torch functions.

Shapes: B images per batch, d masks per image, C classes. ``logits`` are the head's outputs
o_i per mask, (B, d, C) float; ``targets`` are multi-hot image labels, (B, C) float in {0, 1}.

* MIL (paper eq. 2): bag score s_ij = mean of the top-k of o_i[:, j] with
  k = max(1, ceil(d / a)); p_i = softmax_j(s_i); L_MIL = mean_i CE(normalised y_i, p_i).
* Uncertainty distillation: teacher entropy H per mask; bad set B_i = {H > tau} union
  {H <= tau and argmax not a positive label of the image}; L_unc = mean over bad masks of
  -sum_c log_softmax(o)_c, which is smallest (C log C) at the uniform prediction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def topk_count(d: int, a: int) -> int:
    """k = max(1, ceil(d / a)) masks per class in the bag score; d, a >= 1."""
    if d < 1 or a < 1:
        raise ValueError(f"topk_count needs d >= 1 and a >= 1, got d={d}, a={a}")
    return max(1, math.ceil(d / a))


def _check_logits(logits: Tensor, name: str = "logits") -> None:
    if logits.dim() != 3:
        raise ValueError(f"{name} must be (B, d, C), got shape {tuple(logits.shape)}")
    if logits.shape[1] < 1 or logits.shape[2] < 1:
        raise ValueError(f"{name} needs d >= 1 masks and C >= 1 classes, "
                         f"got shape {tuple(logits.shape)}")


def _check_targets(logits: Tensor, targets: Tensor) -> None:
    _check_logits(logits)
    if targets.dim() != 2:
        raise ValueError(f"targets must be (B, C), got shape {tuple(targets.shape)}")
    b, _, c = logits.shape
    if targets.shape != (b, c):
        raise ValueError(f"targets shape {tuple(targets.shape)} does not match logits "
                         f"{tuple(logits.shape)}: expected ({b}, {c})")


def _check_bad(logits: Tensor, bad: Tensor) -> None:
    _check_logits(logits)
    if bad.shape != logits.shape[:2]:
        raise ValueError(f"bad mask shape {tuple(bad.shape)} does not match logits "
                         f"{tuple(logits.shape)}: expected {tuple(logits.shape[:2])}")
    if bad.dtype != torch.bool:
        raise ValueError(f"bad must be a bool tensor, got {bad.dtype}")


def bag_scores(logits: Tensor, k: int) -> Tensor:
    """Per-class bag scores: (B, d, C) float logits -> (B, C), mean of the top-k over masks."""
    _check_logits(logits)
    d = logits.shape[1]
    if not 1 <= k <= d:
        raise ValueError(f"k must be in [1, d={d}], got {k}")
    return torch.topk(logits, k, dim=1).values.mean(dim=1)


def normalise_targets(targets: Tensor) -> Tensor:
    """(B, C) float multi-hot {0, 1} -> (B, C) float rows summing to 1.

    Raises ValueError naming the first row with no positive label, or on negative entries.
    """
    if targets.dim() != 2:
        raise ValueError(f"targets must be (B, C), got shape {tuple(targets.shape)}")
    targets = targets.float()
    if bool((targets < 0).any()):
        raise ValueError("targets must be multi-hot (entries 0 or 1), found a negative entry")
    sums = targets.sum(dim=1, keepdim=True)
    empty = torch.nonzero(sums.squeeze(1) <= 0).flatten()
    if empty.numel():
        raise ValueError(f"target row {int(empty[0])} has no positive label "
                         f"({empty.numel()} such row(s)): every image needs a class")
    return targets / sums


def mil_loss(logits: Tensor, targets: Tensor, a: int) -> Tensor:
    """Scalar L_MIL: batch mean of CE(normalised targets, softmax_j(bag_scores)).

    logits (B, d, C) float, targets (B, C) multi-hot float; k = topk_count(d, a).
    """
    _check_targets(logits, targets)
    y = normalise_targets(targets).to(logits.dtype)
    s = bag_scores(logits, topk_count(logits.shape[1], a))
    return -(y * F.log_softmax(s, dim=1)).sum(dim=1).mean()


def mask_entropy(logits: Tensor) -> Tensor:
    """(B, d, C) float logits -> (B, d) entropy of softmax over C (natural log)."""
    _check_logits(logits)
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


@torch.no_grad()
def bad_set(teacher_logits: Tensor, targets: Tensor, tau: float) -> Tensor:
    """(B, d) bool: H > tau, or H <= tau with an argmax that is not a positive label.

    teacher_logits (B, d, C) float (not differentiated through), targets (B, C) multi-hot.
    """
    _check_targets(teacher_logits, targets)
    h = mask_entropy(teacher_logits)
    pred = teacher_logits.argmax(dim=-1)  # (B, d)
    correct = torch.gather(targets > 0, 1, pred)
    return (h > tau) | ((h <= tau) & ~correct)


def uncertainty_loss(logits: Tensor, bad: Tensor) -> Tensor:
    """Scalar L_unc: mean over bad masks of -sum_c log_softmax(o)_c.

    logits (B, d, C) float, bad (B, d) bool. With no bad mask the result is a zero that is
    still connected to ``logits`` (so ``backward`` works and gives zero gradients).
    """
    _check_bad(logits, bad)
    per_mask = -F.log_softmax(logits, dim=-1).sum(dim=-1)  # (B, d)
    n = bad.sum()
    if int(n) == 0:
        return (logits * 0.0).sum()
    return per_mask[bad].sum() / n


def student_loss(logits: Tensor, targets: Tensor, bad: Tensor, a: int,
                 lambda_mil: float = 1.0,
                 lambda_unc: float = 0.15) -> tuple[Tensor, Tensor, Tensor]:
    """(total, mil, unc) scalars; total = lambda_mil * L_MIL + lambda_unc * L_unc(bad).

    logits (B, d, C) float, targets (B, C) multi-hot float, bad (B, d) bool.
    """
    mil = mil_loss(logits, targets, a)
    unc = uncertainty_loss(logits, bad)
    return lambda_mil * mil + lambda_unc * unc, mil, unc
