"""Seeded region growing of sparse labels (Kim 2022, ch. 3; docs/algorithms.md §3, step 4).

A labelled region spreads its class to a neighbouring, unqueried region when the model is
sure of it there: the region's mean softmax has that class as its argmax with a score
above ``beta``. Growing repeats ``hops`` times from the regions grown so far. Grown pixels
train the model like labels but are never counted as labelled, queried or costed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from segloop.data.image_maps import ImageMaps
from segloop.train.loop import iter_probs

if TYPE_CHECKING:
    from segloop.active.pool import Pool
    from segloop.active.state import LabelState
    from segloop.config import RegionConfig


def region_adjacency(regions: np.ndarray, num_regions: int) -> np.ndarray:
    """(R, R) bool: regions sharing a horizontal or vertical pixel edge (no self-loops).

    ``regions`` (H, W) int ids in [0, R)."""
    adj = np.zeros((num_regions, num_regions), bool)
    for a, b in ((regions[:, :-1], regions[:, 1:]), (regions[:-1, :], regions[1:, :])):
        edge = a != b
        adj[a[edge], b[edge]] = True
    return adj | adj.T


def region_mean_probs(probs: torch.Tensor, regions: np.ndarray, num_regions: int
                      ) -> np.ndarray:
    """(C, H, W) softmax, (H, W) ids -> (R, C) float64 mean probability per region."""
    c = probs.shape[0]
    ids = torch.from_numpy(regions.astype(np.int64)).flatten()
    sums = torch.zeros(num_regions, c, dtype=torch.float64).index_add_(
        0, ids, probs.reshape(c, -1).T.double())
    counts = torch.bincount(ids, minlength=num_regions).clamp_min(1).double()
    return (sums / counts[:, None]).numpy()


def grow_image(labels: np.ndarray, queried: np.ndarray, regions: np.ndarray,
               num_regions: int, probs: torch.Tensor, beta: float, hops: int,
               ignore_index: int) -> np.ndarray:
    """Grow one image's labels: (H, W) uint8 labels, (H, W) bool queried, (H, W) region ids,
    (C, H, W) softmax -> (H, W) uint8 labels (the input's labels kept, grown ones added).

    A queried region's class is its most frequent labelled class; a region is a candidate
    if no pixel of it was queried.
    """
    out = labels.copy()
    if hops <= 0 or not queried.any():
        return out
    flat_r = regions.ravel()
    lab = labels.ravel()
    known = queried.ravel() & (lab != ignore_index)
    c = probs.shape[0]
    region_class = np.full(num_regions, -1, np.int64)
    if known.any():
        counts = np.zeros((num_regions, c), np.int64)
        np.add.at(counts, (flat_r[known], lab[known].astype(np.int64)), 1)
        has = counts.sum(1) > 0
        region_class[has] = counts[has].argmax(1)
    touched = np.bincount(flat_r, weights=queried.ravel(), minlength=num_regions) > 0
    mean = region_mean_probs(probs, regions, num_regions)
    sure_class = mean.argmax(1)
    sure = mean.max(1) > beta
    adj = region_adjacency(regions, num_regions)
    sources = region_class >= 0
    for _ in range(hops):
        grown = np.zeros(num_regions, bool)
        for cls in np.unique(region_class[sources]):
            near = adj[sources & (region_class == cls)].any(0)
            take = near & ~touched & (region_class < 0) & sure & (sure_class == cls)
            region_class[take] = cls
            grown |= take
        if not grown.any():
            break
        mask = grown[flat_r]
        out.reshape(-1)[mask] = region_class[flat_r[mask]].astype(np.uint8)
        sources = grown
    return out


def grow_labels(labels: np.ndarray, queried: np.ndarray, regions: np.ndarray,
                num_regions: np.ndarray, probs_of: dict[int, torch.Tensor], beta: float,
                hops: int, ignore_index: int) -> tuple[np.ndarray, int]:
    """Grow every image in ``probs_of`` (image index -> (C, H, W) softmax).

    ``labels`` (N, H, W) uint8, ``queried`` (N, H, W) bool, ``regions`` (N, H, W) int,
    ``num_regions`` (N,). Returns the grown labels (N, H, W) uint8 and the number of
    pixels added.
    """
    out = labels.copy()
    for i, probs in probs_of.items():
        out[i] = grow_image(labels[i], queried[i], regions[i], int(num_regions[i]), probs,
                            beta, hops, ignore_index)
    added = int(((out != ignore_index) & (labels == ignore_index)).sum())
    return out, added


def region_grower(pool: Pool, state: LabelState, labels: ImageMaps, rc: RegionConfig,
                  ignore_index: int, device: torch.device, batch_size: int = 32
                  ) -> Callable[[nn.Module], ImageMaps]:
    """A label refresh for :func:`segloop.train.loop.train_model`: given the current
    (teacher) model, the training ``labels`` (N, H, W) uint8 grown on every image with a
    queried pixel. Reads the touched images in batches (memory stays flat)."""
    assert pool.regions is not None and pool.num_regions is not None
    regions, counts = pool.regions, pool.num_regions
    touched = np.flatnonzero(state.image_queried())

    def refresh(model: nn.Module) -> ImageMaps:
        out = labels.copy()
        for start in range(0, touched.size, batch_size):
            part = touched[start : start + batch_size]
            for _, probs in iter_probs(model, pool.arrays.images[part], device, batch_size):
                for b, i in enumerate(part):
                    out[i] = grow_image(labels[i], state.queried[i], regions[i],
                                        int(counts[i]), probs[b], rc.grow_beta,
                                        rc.grow_hops, ignore_index)
        return out

    return refresh
