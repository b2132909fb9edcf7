"""The unlabelled pool and the evaluation split, held at the working resolution.

The pool carries the ground truth only for the simulated annotator (benchmarks, demo); a
human round never reads it. Regions (the units of region-level rounds) are computed once
per pool image, deterministically, so a resumed run sees the same regions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from tqdm.auto import tqdm

from segloop.config import ActiveConfig, Config
from segloop.data.datasets import open_dataset
from segloop.errors import ConfigError
from segloop.train.arrays import SplitArrays, stack_split

T = TypeVar("T")


@dataclass(frozen=True)
class Pool:
    """``arrays`` of the pool split; ``regions`` (N, H, W) int32 and ``num_regions`` (N,)
    for region-level rounds (None at image level); ``image_uris`` the original files."""

    arrays: SplitArrays
    image_uris: tuple[str, ...]
    regions: np.ndarray | None
    num_regions: np.ndarray | None

    def __len__(self) -> int:
        return len(self.arrays)

    @property
    def pixels_per_image(self) -> int:
        h, w = self.arrays.hw
        return h * w

    @property
    def total_pixels(self) -> int:
        return len(self) * self.pixels_per_image

    def index_of(self) -> dict[str, int]:
        return {image_id: i for i, image_id in enumerate(self.arrays.image_ids)}


def limited(items: list[T], limit: int | None, spread: bool) -> list[T]:
    """``limit`` of ``items``: the first, or (``spread``) item floor(i * n / limit) for
    i < limit, evenly spaced over the whole list; all of them when ``limit`` is None."""
    if not limit or limit >= len(items):
        return items
    if not spread:
        return items[:limit]
    return [items[i * len(items) // limit] for i in range(limit)]


def load_split(cfg: Config, root: str, split: str, limit: int | None) -> tuple[SplitArrays,
                                                                            tuple[str, ...]]:
    """Read a split (``limit`` of its images: the first, or evenly spread with
    ``active.limit_spread``) at ``active.image_size``."""
    ds = open_dataset(cfg.data.format, root, split, cfg.data.classes,
                      storage_options=cfg.data.storage_options,
                      manifest_external=cfg.data.manifest_external)
    samples = limited(list(ds.samples()), limit, cfg.active.limit_spread)
    size = cfg.active.image_size
    arrays = stack_split((ds.load(s) for s in samples), size, desc=f"loading {split}")
    return arrays, tuple(s.image_url for s in samples)


def compute_regions(arrays: SplitArrays, ac: ActiveConfig) -> tuple[np.ndarray, np.ndarray]:
    """Region maps (N, H, W) int32 with consecutive ids per image, and their counts (N,)."""
    if ac.region.source in ("sam", "clusters"):
        if not ac.region.sam_embeddings:
            raise ConfigError(
                f"active.region.source: '{ac.region.source}' reads SAM outputs from the embed "
                "flow's output; set active.region.sam_embeddings to that folder (embed.output "
                "in the workspace, e.g. <workspace>/data/embeddings/camvid) after running "
                "`segloop run embed` on the pool split")
        from segloop.active.sam_regions import cluster_region_maps, sam_region_maps

        maps = (sam_region_maps(arrays, ac.region.sam_embeddings)
                if ac.region.source == "sam" else
                cluster_region_maps(arrays, ac.region.sam_embeddings, ac.region.cluster_tau))
    else:
        from segloop.active.regions import slic_regions

        maps = np.empty((len(arrays), *arrays.hw), dtype=np.int32)
        images = arrays.images.permute(0, 2, 3, 1).numpy()
        for i in tqdm(range(len(arrays)), desc="superpixels", unit="img", leave=False):
            maps[i] = slic_regions(images[i], ac.region.n_segments, ac.region.compactness)
    counts = maps.reshape(len(arrays), -1).max(1).astype(np.int64) + 1
    return maps, counts


def build_pool(cfg: Config, root: str) -> Pool:
    arrays, uris = load_split(cfg, root, cfg.active.pool_split, cfg.active.pool_limit)
    regions = counts = None
    if cfg.active.level == "region":
        regions, counts = compute_regions(arrays, cfg.active)
    return Pool(arrays=arrays, image_uris=uris, regions=regions, num_regions=counts)
