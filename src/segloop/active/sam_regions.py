"""Region units from SAM: the embed flow's masks painted into one region map per image, or
its image embeddings clustered by Kim 2022's greedy low-first rule (docs/algorithms.md §3)."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from segloop.active.regions import masks_to_regions
from segloop.embed.store import read_embeddings
from segloop.train.arrays import SplitArrays


def resize_masks(masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(K, H0, W0) bool -> (K, h, w) bool by nearest neighbour (pixel centres)."""
    h0, w0 = masks.shape[1:]
    h, w = hw
    if (h0, w0) == (h, w):
        return masks
    rows = np.minimum(((np.arange(h) + 0.5) * h0 / h).astype(np.int64), h0 - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * w0 / w).astype(np.int64), w0 - 1)
    return masks[:, rows][:, :, cols]


def sam_region_maps(arrays: SplitArrays, embeddings: str) -> np.ndarray:
    """(N, h, w) int32 region maps of the pool from the embed output folder ``embeddings``
    (:func:`sam_maps` of its ids at its size)."""
    return sam_maps(list(arrays.image_ids), arrays.hw, embeddings)


def sam_maps(image_ids: list[str], hw: tuple[int, int], embeddings: str) -> np.ndarray:
    """(n, h, w) int32 region maps of ``image_ids`` at ``hw`` from the embed output folder
    ``embeddings``.

    Each image's grid-mode SAM masks (best mask per point) are resized to the working size
    and painted by ascending predicted IoU (the most confident mask wins); pixels no mask
    covers form regions of their own (see :func:`masks_to_regions`). Images missing from
    the output raise :class:`~segloop.errors.StoreError` naming them.
    """
    got = read_embeddings(embeddings, image_ids, tokens=False)
    maps = np.empty((len(image_ids), *hw), dtype=np.int32)
    for i in range(len(image_ids)):
        maps[i] = masks_to_regions(resize_masks(got.masks(i), hw), got.iou[i])
    return maps


def cluster_region_maps(arrays: SplitArrays, embeddings: str, tau: float) -> np.ndarray:
    """(N, h, w) int32 region maps of the pool (:func:`cluster_maps` of its ids)."""
    return cluster_maps(list(arrays.image_ids), arrays.hw, embeddings, tau)


def cluster_maps(image_ids: list[str], hw: tuple[int, int], embeddings: str,
                 tau: float) -> np.ndarray:
    """(n, h, w) int32 region maps: each image's SAM image embedding (its valid, unpadded
    cells) clustered with :func:`cluster_feature_map` at ``tau`` and resized (nearest) to
    ``hw``. Needs ``embed.image_embeddings: true``."""
    from segloop.embed.store import read_image_embeddings
    from segloop.pseudolabel.cluster_seeds import valid_sam_grid
    from segloop.pseudolabel.clustering import cluster_feature_map

    maps = np.empty((len(image_ids), *hw), dtype=np.int32)
    for start in tqdm(range(0, len(image_ids), 32), desc="feature clusters", unit="batch",
                      leave=False):
        batch = read_image_embeddings(embeddings, image_ids[start : start + 32])
        for n, emb in enumerate(batch):
            grid = valid_sam_grid(emb.astype(np.float32), hw)
            maps[start + n] = cluster_feature_map(grid, tau, out_hw=hw)
    return maps
