"""Balanced seed loss (Kim 2022, eq. 3.8, after Kolesnikov and Lampert's SEC;
docs/algorithms.md §3, step 5).

Seeds are sparse: a background superpixel may hold far more pixels than the foreground
seeds. Each of the two groups is therefore averaged on its own, so the foreground pixels
together weigh as much as the background pixels together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segloop.errors import ConfigError, DataError


def balanced_seed_loss(
    logits: torch.Tensor,
    seeds: torch.Tensor,
    background: int | None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Cross-entropy averaged separately over background and foreground seed pixels.

    loss = sum_{p in L_b} CE_p / |L_b| + sum_{p in L_f} CE_p / |L_f|, where L_b are the
    pixels labelled ``background``, L_f every other labelled pixel (label !=
    ``ignore_index``), CE_p = -log softmax(logits)_p[label_p]. A term with no pixels is 0
    (so a batch with no seed at all gives 0, still attached to the graph, where
    ``F.cross_entropy`` would give NaN). Both sums run over the whole batch.

    Args:
        logits: (B, C, H, W) float scores.
        seeds: (B, H, W) integer labels (int64 preferred) in 0..C-1 or ``ignore_index``.
        background: the background class id (0..C-1), or None: then every labelled pixel
            is foreground and the loss is the plain mean cross-entropy over labelled
            pixels.
        ignore_index: label of unlabelled pixels, which add nothing.

    Returns:
        A 0-d float tensor, differentiable with respect to ``logits``.
    """
    if logits.dim() != 4:
        raise DataError(f"logits must be (B, C, H, W), got shape {tuple(logits.shape)}")
    b, c, h, w = logits.shape
    if seeds.shape != (b, h, w):
        raise DataError(f"seeds must be (B, H, W) = {(b, h, w)} to match logits, got "
                        f"{tuple(seeds.shape)}")
    if seeds.is_floating_point() or seeds.is_complex() or seeds.dtype == torch.bool:
        raise DataError(f"seeds must be an integer tensor (int64), got {seeds.dtype}")
    if background is not None and not (0 <= int(background) < c
                                       and int(background) != ignore_index):
        raise ConfigError(f"background must be a class id in 0..{c - 1} other than "
                          f"ignore_index {ignore_index}, got {background}")
    target = seeds.long()
    labelled = target != ignore_index
    bad = labelled & ((target < 0) | (target >= c))
    if bool(bad.any()):
        raise DataError(f"seeds hold labels outside 0..{c - 1} (and not ignore_index "
                        f"{ignore_index}): {torch.unique(target[bad])[:5].tolist()}; the "
                        "model has too few classes or the seed map uses another id scheme")
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    if background is None:
        fg = labelled
        bg_term = ce.new_zeros(())
    else:
        is_bg = target == int(background)
        fg = labelled & ~is_bg
        bg_term = (ce * is_bg).sum() / is_bg.sum().clamp_min(1)
    fg_term = (ce * fg).sum() / fg.sum().clamp_min(1)
    return bg_term + fg_term
