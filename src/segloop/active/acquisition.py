"""Acquisition scores for active learning: per pixel, per image and per region.

Inputs are softmax probabilities ``probs`` (B, C, H, W) floating (C >= 2) or Monte-Carlo
samples ``mc`` (T, B, C, H, W). For every strategy a higher score means more uncertain,
so it is labelled first. UIG follows Kawano et al. 2022 (docs/algorithms.md §1).
Strategy ``"random"`` has no score map: draw scores with :func:`random_scores`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import torch

from segloop.errors import ConfigError, DataError

UIG_EPS = 1e-12
"""Var(V) below this counts as uniform (UIG = 1); also the floor of every division."""


class StrategyInfo(NamedTuple):
    needs_mc: bool
    description: str
    kind: str = "uncertainty"  # "random" | "uncertainty" | "badge" | "typiclust"


STRATEGIES: Mapping[str, StrategyInfo] = MappingProxyType(
    {
        "random": StrategyInfo(False, "uniform random scores (random_scores); the baseline",
                               "random"),
        "entropy": StrategyInfo(False, "-sum p log p per pixel"),
        "margin": StrategyInfo(False, "1 - (p_top1 - p_top2) per pixel"),
        "least_confidence": StrategyInfo(False, "1 - max p per pixel"),
        "uig": StrategyInfo(False, "uncertainty indicator; image score on the mean softmax"),
        "uig_pixel": StrategyInfo(False, "uncertainty indicator per pixel; image score = mean"),
        "bald": StrategyInfo(True, "mutual information over MC-dropout samples (T, B, C, H, W)"),
        "badge": StrategyInfo(False, "BADGE: k-means++ on gradient embeddings (image level); "
                              "score = the embedding's norm", "badge"),
        "typiclust": StrategyInfo(False, "TypiClust: the most typical image of each "
                                  "uncovered cluster (image level); score = typicality",
                                  "typiclust"),
    }
)


def check_strategy(name: str) -> str:
    """Return ``name`` if it is a known strategy, else raise ConfigError listing them."""
    if name not in STRATEGIES:
        raise ConfigError(
            f"unknown acquisition strategy {name!r}; use one of {', '.join(sorted(STRATEGIES))}"
        )
    return name


def _check_probs(x: torch.Tensor, ndim: int, what: str, dim: int = 1) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise DataError(
            f"{what} must be a floating torch.Tensor, got {type(x).__name__}"
            f"{'' if not isinstance(x, torch.Tensor) else ' of ' + str(x.dtype)}"
        )
    if ndim and x.ndim != ndim:
        raise DataError(
            f"{what} must have {ndim} dims, got shape {tuple(x.shape)}; "
            + (
                "pass softmax probabilities (B, C, H, W)"
                if ndim == 4
                else "pass MC samples (T, B, C, H, W)"
            )
        )
    if x.ndim == 0 or x.shape[dim] < 2:
        raise DataError(f"{what} needs >= 2 classes on dim {dim}, got shape {tuple(x.shape)}")


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of (B, C, H, W) probabilities -> (B, H, W); 0 log 0 = 0."""
    _check_probs(probs, 4, "probs")
    return -torch.special.xlogy(probs, probs).sum(dim=1)


def margin(probs: torch.Tensor) -> torch.Tensor:
    """1 - (p_top1 - p_top2) of (B, C, H, W) probabilities -> (B, H, W)."""
    _check_probs(probs, 4, "probs")
    top = probs.topk(2, dim=1).values
    return 1.0 - (top[:, 0] - top[:, 1])


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    """1 - max p of (B, C, H, W) probabilities -> (B, H, W)."""
    _check_probs(probs, 4, "probs")
    return 1.0 - probs.amax(dim=1)


def uig(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Uncertainty indicator of probability vectors along ``dim`` (removed from the shape).

    m = max V; V' = V with m kept and the others (1 - m) / (C - 1); UIG = 1 - Var(V') /
    Var(V) * m with population variances. Var(V) < UIG_EPS (uniform V) gives 1. Result in
    [0, 1], same dtype (half precision is computed in float32); differentiable (usable as
    the ch. 4 uncertainty loss). For C = 2, V' = V so UIG = 1 - max p (<= 0.5) except at
    exactly uniform V, where it is 1.
    """
    _check_probs(probs, 0, "probs", dim=dim)
    c = probs.shape[dim]
    x = probs.float() if probs.element_size() < 4 else probs
    m = x.amax(dim=dim)
    var = x.var(dim=dim, correction=0)
    rest = (1.0 - m) / (c - 1)
    mean_prime = (m + (c - 1) * rest) / c
    min_var = ((m - mean_prime) ** 2 + (c - 1) * (rest - mean_prime) ** 2) / c
    score = 1.0 - min_var / var.clamp_min(UIG_EPS) * m
    score = torch.where(var < UIG_EPS, torch.ones_like(score), score)
    return score.clamp(0.0, 1.0).to(probs.dtype)


def _masked_mean(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, ...) over all but dim 0, over ``valid`` only; 0 where nothing is valid."""
    if valid is None:
        return x.flatten(1).mean(dim=1)
    if valid.shape != x.shape or valid.dtype != torch.bool:
        raise DataError(
            f"valid must be a bool tensor of shape {tuple(x.shape)}, "
            f"got {valid.dtype} {tuple(valid.shape)}"
        )
    w = valid.flatten(1).to(x.dtype)
    return (x.flatten(1) * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


def uig_image(probs: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Thesis image score: UIG of the image-averaged softmax. (B, C, H, W) -> (B,).

    ``valid`` (B, H, W) bool restricts the average to valid pixels; an image with no valid
    pixel scores 0 (least uncertain: labelled last).
    """
    _check_probs(probs, 4, "probs")
    b, c = probs.shape[:2]
    if valid is None:
        return uig(probs.flatten(2).mean(dim=2), dim=1)
    if valid.shape != (b, *probs.shape[2:]) or valid.dtype != torch.bool:
        raise DataError(
            f"valid must be a bool tensor of shape {(b, *probs.shape[2:])}, "
            f"got {valid.dtype} {tuple(valid.shape)}"
        )
    w = valid.flatten(1).to(probs.dtype)  # (B, HW)
    n = w.sum(dim=1)
    mean = (probs.flatten(2) * w[:, None]).sum(dim=2) / n.clamp_min(1.0)[:, None]
    return torch.where(n > 0, uig(mean, dim=1), torch.zeros_like(n))


def bald(mc_probs: torch.Tensor) -> torch.Tensor:
    """BALD mutual information H(mean_t p) - mean_t H(p_t): (T, B, C, H, W) -> (B, H, W) >= 0."""
    _check_probs(mc_probs, 5, "mc_probs", dim=2)
    mean = mc_probs.mean(dim=0)
    h_mean = -torch.special.xlogy(mean, mean).sum(dim=1)
    mean_h = -torch.special.xlogy(mc_probs, mc_probs).sum(dim=2).mean(dim=0)
    return (h_mean - mean_h).clamp_min(0.0)


_PIXEL: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "entropy": entropy,
    "margin": margin,
    "least_confidence": least_confidence,
    "uig": uig,
    "uig_pixel": uig,
    "bald": bald,
}


def _check_scored(strategy: str) -> None:
    check_strategy(strategy)
    if STRATEGIES[strategy].kind != "uncertainty":
        raise ConfigError(f"strategy {strategy!r} has no score map"
                          + ("; use random_scores(n, generator)" if strategy == "random"
                             else "; it selects with segloop.active.choose"))


def pixel_scores(strategy: str, probs_or_mc: torch.Tensor) -> torch.Tensor:
    """Per-pixel scores (B, H, W). ``probs_or_mc`` is (T, B, C, H, W) for "bald", else
    (B, C, H, W) (average MC samples first with ``mc.mean(0)``). "uig" = per-pixel UIG."""
    _check_scored(strategy)
    return _PIXEL[strategy](probs_or_mc)


def image_scores(
    strategy: str, probs_or_mc: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Image scores (B,). "uig" = :func:`uig_image` (UIG of the mean softmax); every other
    strategy, "uig_pixel" included, = mean of its pixel scores. ``valid`` (B, H, W) bool
    restricts the means to valid pixels; an image with no valid pixel scores 0."""
    _check_scored(strategy)
    if strategy == "uig":
        return uig_image(probs_or_mc, valid)
    return _masked_mean(pixel_scores(strategy, probs_or_mc), valid)


def random_scores(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) float32 scores uniform in [0, 1) from ``generator`` (seed it for reproducibility)."""
    if n < 0:
        raise DataError(f"random_scores needs n >= 0, got {n}")
    return torch.rand(n, generator=generator)


def _region_ids(
    regions: torch.Tensor | np.ndarray, shape: torch.Size, num_regions: int, device: torch.device
) -> torch.Tensor:
    ids = torch.as_tensor(regions, device=device)
    if ids.shape != shape or ids.is_floating_point() or ids.dtype == torch.bool:
        raise DataError(
            f"regions must be an integer map of shape {tuple(shape)}, "
            f"got {ids.dtype} {tuple(ids.shape)}"
        )
    ids = ids.reshape(-1).long()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_regions):
        raise DataError(
            f"region ids must lie in 0..{num_regions - 1} (num_regions="
            f"{num_regions}), got {int(ids.min())}..{int(ids.max())}; "
            "relabel with segloop.active.regions.relabel_consecutive"
        )
    return ids


def region_scores(
    pixel_scores: torch.Tensor,
    regions: torch.Tensor | np.ndarray,
    num_regions: int,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean pixel score per region.

    ``pixel_scores`` (H, W) float, ``regions`` (H, W) integer ids 0..R-1 (tensor or
    array), ``valid`` (H, W) bool. Returns ``scores`` (R,) in the dtype of
    ``pixel_scores`` (mean over the region's valid pixels; -inf for a region with no valid
    pixel, or no pixel at all) and ``pixels`` (R,) int64: every pixel of the region,
    valid or not (what labelling it costs).
    """
    if pixel_scores.ndim != 2:
        raise DataError(f"pixel_scores must be (H, W), got {tuple(pixel_scores.shape)}")
    ids = _region_ids(regions, pixel_scores.shape, num_regions, pixel_scores.device)
    flat = pixel_scores.reshape(-1)
    pixels = torch.bincount(ids, minlength=num_regions)
    if valid is not None:
        if valid.shape != pixel_scores.shape or valid.dtype != torch.bool:
            raise DataError(f"valid must be a bool tensor of shape {tuple(pixel_scores.shape)}")
        keep = valid.reshape(-1)
        ids, flat = ids[keep], flat[keep]
    sums = torch.zeros(num_regions, dtype=torch.float64, device=flat.device)
    sums.index_add_(0, ids, flat.double())
    counts = torch.bincount(ids, minlength=num_regions)
    mean = sums / counts.clamp_min(1)
    scores = torch.where(counts > 0, mean, torch.full_like(mean, float("-inf")))
    return scores.to(pixel_scores.dtype), pixels


def region_majority(
    pred: torch.Tensor | np.ndarray,
    regions: torch.Tensor | np.ndarray,
    num_regions: int,
    num_classes: int,
) -> torch.Tensor:
    """Most frequent predicted class per region: (R,) int64; ties -> smallest class id;
    -1 for a region with no pixel. ``pred`` (H, W) ids in 0..num_classes-1."""
    pred_t = torch.as_tensor(pred)
    if pred_t.ndim != 2 or pred_t.is_floating_point():
        raise DataError(
            f"pred must be an (H, W) integer map, got {pred_t.dtype} {tuple(pred_t.shape)}"
        )
    p = pred_t.reshape(-1).long()
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise DataError(
            f"pred classes must lie in 0..{num_classes - 1}, got {int(p.min())}..{int(p.max())}"
        )
    ids = _region_ids(regions, pred_t.shape, num_regions, pred_t.device)
    counts = torch.bincount(ids * num_classes + p, minlength=num_regions * num_classes)
    counts = counts.reshape(num_regions, num_classes)
    major = counts.argmax(dim=1)
    return torch.where(counts.sum(dim=1) > 0, major, torch.full_like(major, -1))
