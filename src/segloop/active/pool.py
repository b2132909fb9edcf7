"""The unlabelled pool and the evaluation split at the working resolution.

The loop reads both from a cache on disk (:mod:`segloop.active.pool_cache`, built once per
split and settings, in the workspace), so no split is ever held in memory whole; tests and
benchmarks may load a small split into memory instead. The pool carries the ground truth
only for the simulated annotator (benchmarks, demo); a human round never reads it. Regions
(the units of region-level rounds) are computed once per pool image, deterministically, so
a resumed run sees the same regions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

from segloop.active.pool_cache import (
    MANIFEST,
    CacheInfo,
    RegionFn,
    ShardedArray,
    build_cache,
    cache_key,
    open_cache,
    shards_to_write,
    start_cache,
    write_cache_shard,
)
from segloop.active.pool_manifest import read_manifest
from segloop.config import ActiveConfig, Config
from segloop.data.base import Sample
from segloop.data.datasets import open_dataset
from segloop.errors import ConfigError
from segloop.train.arrays import SplitArrays, stack_split

T = TypeVar("T")


@dataclass(frozen=True)
class Pool:
    """``arrays`` of the pool split; ``regions`` (N, H, W) int32 and ``num_regions`` (N,)
    for region-level rounds (None at image level); ``image_uris`` the original files.

    ``arrays.images`` / ``arrays.labels`` / ``regions`` are tensors or arrays in memory, or
    :class:`~segloop.active.pool_cache.ShardedArray` views that read the rows asked for
    from the pool cache: code indexes them (``images[pick]``, ``regions[i]``), never
    materialises them whole."""

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


def region_maker(ac: ActiveConfig) -> RegionFn:
    """The region maps of ``active.region.source`` for a batch of images:
    (n, H, W, 3) uint8 images and their ids -> (n, H, W) int32 (consecutive ids per image)."""
    if ac.region.source in ("sam", "clusters"):
        if not ac.region.sam_embeddings:
            raise ConfigError(
                f"active.region.source: '{ac.region.source}' reads SAM outputs from the embed "
                "flow's output; set active.region.sam_embeddings to that folder (embed.output "
                "in the workspace, e.g. <workspace>/data/embeddings/camvid) after running "
                "`segloop run embed` on the pool split")
        from segloop.active.sam_regions import cluster_maps, sam_maps

        emb, tau = ac.region.sam_embeddings, ac.region.cluster_tau
        if ac.region.source == "sam":
            return lambda images, ids: sam_maps(ids, images.shape[1:3], emb)
        return lambda images, ids: cluster_maps(ids, images.shape[1:3], emb, tau)
    from segloop.active.regions import slic_regions

    n_segments, compactness = ac.region.n_segments, ac.region.compactness
    return lambda images, ids: np.stack([slic_regions(im, n_segments, compactness)
                                         for im in images])


def compute_regions(arrays: SplitArrays, ac: ActiveConfig) -> tuple[np.ndarray, np.ndarray]:
    """Region maps (N, H, W) int32 with consecutive ids per image, and their counts (N,)."""
    make = region_maker(ac)
    ids = list(arrays.image_ids)
    maps = np.empty((len(arrays), *arrays.hw), dtype=np.int32)
    step = 64
    for s in tqdm(range(0, len(arrays), step), desc="regions", unit="batch", leave=False):
        images = arrays.images[s : s + step].permute(0, 2, 3, 1).numpy()
        maps[s : s + step] = make(images, ids[s : s + step])
    counts = maps.reshape(len(arrays), -1).max(1).astype(np.int64) + 1
    return maps, counts


def split_settings(cfg: Config, split: str, limit: int | None, regions: bool,
                   samples: list[Sample]) -> dict[str, Any]:
    """What decides a cached split's content (its cache key): the settings, and the listed
    files (names, which have labels, and, on local disks, their sizes), not where they lie,
    so a dataset moved or copied elsewhere keeps its cache."""
    ac, d = cfg.active, cfg.data
    out: dict[str, Any] = {
        "format": d.format, "split": split, "limit": limit,
        "spread": ac.limit_spread, "size": list(ac.image_size) if ac.image_size else None,
        "classes": [c.name for c in sorted(d.classes.classes, key=lambda c: c.id)],
        "manifest_external": d.manifest_external, "files": listing_digest(samples)}
    if regions:
        out["regions"] = ac.region.model_dump(mode="json", include={
            "source", "n_segments", "compactness", "sam_embeddings", "cluster_tau"})
        if ac.region.source in ("sam", "clusters") and ac.region.sam_embeddings:
            from segloop.data.fs import parquet_fingerprint

            out["embeddings"] = parquet_fingerprint(ac.region.sam_embeddings)
    return out


def listing_digest(samples: list[Sample]) -> str:
    """sha256 (16 hex digits) of the samples' names, label presence and, for local files,
    sizes: a changed, added or removed file changes it."""
    import hashlib

    h = hashlib.sha256()
    for s in samples:
        size = -1
        if "://" not in s.image_url or s.image_url.startswith("file://"):
            path = s.image_url.removeprefix("file://")
            size = os.path.getsize(path) if os.path.isfile(path) else -1
        h.update(f"{s.name}\t{s.label_url is not None}\t{size}\n".encode())
    return h.hexdigest()[:16]


CACHE_SHARD = 256  # images per pool-cache shard (one mapped task's share when building)


@dataclass(frozen=True)
class SplitCache:
    """Where a split's cache lies and what writing it needs (not picklable: per process)."""

    folder: Path
    samples: list[Sample]
    settings: dict[str, Any]
    load: Any
    region_fn: RegionFn | None
    group: Any


def _split_cache(cfg: Config, root: str, split: str, limit: int | None, cache_root: Path,
                 regions: bool) -> SplitCache:
    ds = open_dataset(cfg.data.format, root, split, cfg.data.classes,
                      storage_options=cfg.data.storage_options,
                      manifest_external=cfg.data.manifest_external)
    samples = limited(list(ds.samples()), limit, cfg.active.limit_spread)
    settings = split_settings(cfg, split, limit, regions, samples)
    return SplitCache(cache_root / f"{split or 'all'}-{cache_key(settings)}", samples,
                      settings, ds.load, region_maker(cfg.active) if regions else None,
                      camvid_group if cfg.data.format == "camvid" else None)


def cached_split(cfg: Config, root: str, split: str, limit: int | None, cache_root: Path,
                 regions: bool = False) -> tuple[CacheInfo, list[Sample]]:
    """A split at ``active.image_size``, cached under ``cache_root/<split>-<key>`` (built
    once; a killed build resumes; shards written before, e.g. by mapped
    :func:`write_split_shard` tasks, are kept), and its samples as listed now."""
    c = _split_cache(cfg, root, split, limit, cache_root, regions)
    info = open_cache(c.folder)
    if info is not None:
        return info, c.samples
    return build_cache(c.folder, c.samples, c.load, cfg.active.image_size, c.settings,
                       CACHE_SHARD, regions=c.region_fn, group=c.group, split=split,
                       root=root, desc=f"caching {split}"), c.samples


@dataclass(frozen=True)
class CachePlan:
    """A split's cache still to write: which shards (the mapped tasks' work)."""

    split: str
    limit: int | None
    regions: bool
    shards: tuple[int, ...]
    cache_root: str  # the folder of the split caches (every worker must reach it)


def plan_split_cache(cfg: Config, root: str, split: str, limit: int | None, cache_root: Path,
                     regions: bool = False) -> CachePlan:
    """The shards of a split's cache not written yet (none if the cache is finished); opens
    the unfinished cache (settings written, leftovers swept) so shards can be written."""
    c = _split_cache(cfg, root, split, limit, cache_root, regions)
    if open_cache(c.folder) is not None:
        return CachePlan(split, limit, regions, (), str(cache_root))
    start_cache(c.folder, c.settings, len(c.samples), CACHE_SHARD)
    return CachePlan(split, limit, regions,
                     tuple(shards_to_write(c.folder, len(c.samples), CACHE_SHARD)),
                     str(cache_root))


def write_split_shard(cfg: Config, root: str, plan: CachePlan, shard: int) -> int:
    """Write one shard of a planned split cache (decoding, resizing and, at region level,
    the region maps of its images); returns the images written."""
    c = _split_cache(cfg, root, plan.split, plan.limit, Path(plan.cache_root), plan.regions)
    return write_cache_shard(c.folder, c.samples, c.load, cfg.active.image_size, shard,
                             CACHE_SHARD, c.region_fn, c.group, plan.split, root)


def camvid_group(name: str) -> str | None:
    """CamVid's clip of an image (``0001TP_008550.png`` -> ``0001TP``)."""
    head = name.split("_", 1)[0]
    return head if head != name else None


def cached_arrays(info: CacheInfo) -> SplitArrays:
    """The cached split as :class:`SplitArrays` whose images and labels are read from disk
    on indexing (:class:`ShardedArray`)."""
    rows = read_manifest(info.folder / MANIFEST, ["image_id", "name", "height", "width"])
    return SplitArrays(
        images=ShardedArray(info, "images"),  # type: ignore[arg-type]
        labels=ShardedArray(info, "labels") if info.has_labels else None,  # type: ignore[arg-type]
        image_ids=tuple(r["image_id"] for r in rows), names=tuple(r["name"] for r in rows),
        original_hw=tuple((r["height"], r["width"]) for r in rows))


def build_pool(cfg: Config, root: str, cache_root: Path | None = None) -> Pool:
    """The pool split (``active.pool_limit`` of it): streamed from a cache under
    ``cache_root`` (built once), or, without one, loaded into memory."""
    ac = cfg.active
    region_level = ac.level == "region"
    if cache_root is None:
        arrays, uris = load_split(cfg, root, ac.pool_split, ac.pool_limit)
        regions = counts = None
        if region_level:
            regions, counts = compute_regions(arrays, ac)
        return Pool(arrays=arrays, image_uris=uris, regions=regions, num_regions=counts)
    info, samples = cached_split(cfg, root, ac.pool_split, ac.pool_limit, cache_root,
                                 region_level)
    return Pool(arrays=cached_arrays(info), image_uris=tuple(s.image_url for s in samples),
                regions=ShardedArray(info, "regions", as_tensor=False) if region_level
                else None,  # type: ignore[arg-type]
                num_regions=np.load(info.folder / "num_regions.npy") if region_level else None)


def evaluation_split(cfg: Config, root: str, cache_root: Path | None = None) -> SplitArrays:
    """The evaluation split (``active.eval_limit`` of it), cached like the pool."""
    ac = cfg.active
    if cache_root is None:
        return load_split(cfg, root, ac.eval_split, ac.eval_limit)[0]
    return cached_arrays(cached_split(cfg, root, ac.eval_split, ac.eval_limit, cache_root)[0])
