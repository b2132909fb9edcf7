"""Pseudo-label seeds in the active-learning loop (``active.pseudolabels``).

A pseudo-label round of the pseudolabel flow holds ``labels/<image_id>.png`` at the images'
original size with the target classes' ids and 255 where the method abstained. Here they
are matched to the pool by image id, resized (nearest) to the working resolution, and
kept apart from the human labels: the model trains on a person's label wherever one
exists and on the pseudo-label elsewhere. Pseudo-labels never count as labelled pixels,
as cost, or as queried; the acquisition strategy still sees those pixels as unlabelled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from segloop.active.pool import Pool
from segloop.active.pool_cache import (
    CacheInfo,
    ShardedArray,
    cache_key,
    save_array,
    shard_path,
)
from segloop.data.image_maps import ImageMaps
from segloop.data.json_io import write_json
from segloop.errors import DataError
from segloop.pseudolabel.label_mapping import ABSTAIN
from segloop.pseudolabel.store import LABELS_DIR, read_round_meta


@dataclass(frozen=True)
class Seeds:
    """``labels`` (N, H, W) uint8 pool-aligned pseudo-labels (ignore where none) and where
    they came from. ``labels`` is :class:`ImageMaps` (in memory, for the images the round
    covers) or a :class:`~segloop.active.pool_cache.ShardedArray` of the seed cache beside
    the pool cache, read per image (the loop's case: never all in memory)."""

    labels: ImageMaps | ShardedArray
    folder: str
    method: str
    round: int
    fingerprint: str
    images: int
    pixels: int
    counts: np.ndarray | None = None  # (N,) int64 seeded pixels per image (None: count)

    def summary(self) -> dict[str, Any]:
        return {"pseudo_labelled_images": self.images, "pseudo_labelled_pixels": self.pixels,
                "pseudolabels": f"{self.method} round {self.round:03d}"}

    def recipe(self) -> dict[str, Any]:
        return {"method": self.method, "round": self.round, "fingerprint": self.fingerprint}

    def per_image(self) -> np.ndarray:
        """(N,) int64 seeded pixels per image."""
        if self.counts is not None:
            return self.counts
        assert isinstance(self.labels, ImageMaps)
        return self.labels.count_per_image()


def resolve_folder(value: str, workspace: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() else workspace / path


def _read_seed(path: Path, hw: tuple[int, int], num_classes: int,
               ignore_index: int) -> np.ndarray:
    """One seed map at working size: (H, W) uint8, abstain -> ``ignore_index``."""
    h, w = hw
    label = np.asarray(Image.open(path))
    if label.ndim != 2:
        raise DataError(f"{path} is not a single-channel label map (shape {label.shape})")
    if label.shape != (h, w):
        label = np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
    bad = np.setdiff1d(np.unique(label), [*range(num_classes), ABSTAIN, ignore_index])
    if bad.size:
        raise DataError(f"{path} holds class ids {bad.tolist()} that data.classes lacks "
                        f"({num_classes} classes): the round was made for other classes")
    return np.where(label == ABSTAIN, ignore_index, label).astype(np.uint8)


def _no_seeds(folder: Path, pool: Pool) -> DataError:
    return DataError(f"{folder} has no pseudo-label for any of the {len(pool)} pool images "
                     "(matched by image content id): label the pool split with the "
                     "pseudolabel flow, or fix active.pseudolabels")


def load_seeds(pool: Pool, folder: Path, num_classes: int, ignore_index: int,
               cache: Path | None = None) -> Seeds:
    """Read a pseudo-label round for the pool images it covers: into memory, or (with
    ``cache``, a folder) into a seed cache of shards written once per round and pool."""
    meta = read_round_meta(folder)
    args = (str(folder), str(meta.get("method")), int(meta.get("round", 0)),
            str(meta.get("fingerprint")))
    if cache is not None:
        images = _covered(pool, folder)
        if images == 0:
            raise _no_seeds(folder, pool)
        labels, counts = _seed_cache(pool, folder, meta, cache, num_classes, ignore_index)
        return Seeds(labels, *args, images, int(counts.sum()), counts)
    maps = ImageMaps(len(pool), pool.arrays.hw, np.uint8, ignore_index)
    images = 0
    for i, image_id in enumerate(pool.arrays.image_ids):
        path = folder / LABELS_DIR / f"{image_id}.png"
        if path.is_file():
            maps[i] = _read_seed(path, pool.arrays.hw, num_classes, ignore_index)
            images += 1
    if images == 0:
        raise _no_seeds(folder, pool)
    return Seeds(maps, *args, images, int(maps.count_per_image().sum()))


def _covered(pool: Pool, folder: Path) -> int:
    return sum((folder / LABELS_DIR / f"{i}.png").is_file() for i in pool.arrays.image_ids)


SEED_SHARD = 256


def _seed_cache(pool: Pool, folder: Path, meta: dict[str, Any], cache: Path,
                num_classes: int, ignore_index: int) -> tuple[ShardedArray, np.ndarray]:
    """The round's seeds at working size in shards under ``cache/<key>/`` (key: the round's
    fingerprint and the pool's image ids and size), written once; resumable by shard."""
    ids = hashlib.sha256("\n".join(pool.arrays.image_ids).encode()).hexdigest()
    key = cache_key({"seeds": meta.get("fingerprint"), "round": meta.get("round"),
                     "method": meta.get("method"), "pool": ids, "hw": list(pool.arrays.hw),
                     "classes": num_classes, "ignore": ignore_index})
    out = cache / key
    hw, n = pool.arrays.hw, len(pool)
    info = CacheInfo(out, n, hw, SEED_SHARD, False, False)
    if not (out / "complete.json").is_file():
        for shard, start in enumerate(range(0, n, SEED_SHARD)):
            path = shard_path(out, "seeds", shard)
            if path.is_file():
                continue
            part = np.full((min(SEED_SHARD, n - start), *hw), ignore_index, np.uint8)
            for k, image_id in enumerate(pool.arrays.image_ids[start : start + len(part)]):
                png = folder / LABELS_DIR / f"{image_id}.png"
                if png.is_file():
                    part[k] = _read_seed(png, hw, num_classes, ignore_index)
            save_array(path, part)
        arr = ShardedArray(info, "seeds", as_tensor=False)
        counts = np.concatenate([(rows != ignore_index).reshape(len(rows), -1).sum(1)
                                 for _, rows in arr.batches(SEED_SHARD)]).astype(np.int64)
        save_array(out / "counts.npy", counts)
        write_json(out / "complete.json", {"n": n, "hw": list(hw), "round": meta.get("round")})
    return ShardedArray(info, "seeds", as_tensor=False), np.load(out / "counts.npy")


class SeededLabels:
    """(N, H, W) uint8 training labels: a person's label where the pixel was queried (a
    void answer included), the seed elsewhere; rows are read on demand, so seeds held in
    the seed cache are never all in memory. Indexed like :class:`ImageMaps`."""

    def __init__(self, seeds: Seeds, human: ImageMaps, queried: ImageMaps) -> None:
        self.seeds, self.human, self.queried = seeds, human, queried
        self.n, self.hw, self.fill = human.n, human.hw, human.fill
        self.dtype = np.dtype(np.uint8)
        self._queried = set(queried.indices().tolist())
        self._counts: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n, *self.hw)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, int | np.integer):
            return self[np.asarray([int(key)])][0]
        idx = (np.arange(*key.indices(self.n)) if isinstance(key, slice)
               else np.asarray(key.cpu().numpy() if isinstance(key, torch.Tensor) else key))
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        rows = np.array(self.seeds.labels[idx], dtype=np.uint8, copy=True)
        for k, i in enumerate(idx.reshape(-1).tolist()):
            if i in self._queried:
                q = self.queried[i]
                rows[k][q] = self.human[i][q]
        return rows

    def items(self) -> Iterator[tuple[int, np.ndarray]]:
        """Every image with a label or a seed, in order (read one batch at a time)."""
        has = self.count_per_image() > 0
        for start in range(0, self.n, SEED_SHARD):
            idx = np.arange(start, min(start + SEED_SHARD, self.n))
            idx = idx[has[idx]]
            yield from zip(idx.tolist(), self[idx], strict=True)

    def indices(self) -> np.ndarray:
        return np.flatnonzero(self.count_per_image() > 0)

    def count_per_image(self) -> np.ndarray:
        """(N,) int64 labelled pixels (not ``fill``) per image (counted once: the view
        never changes)."""
        if self._counts is None:
            counts = self.seeds.per_image().copy()
            for i in sorted(self._queried):
                counts[i] = int((self[i] != self.fill).sum())
            self._counts = counts
        return self._counts.copy()

    def copy(self) -> ImageMaps:
        """In memory, every labelled image (region growing edits its copy)."""
        out = ImageMaps(self.n, self.hw, np.uint8, self.fill)
        for i, row in self.items():
            out[i] = row
        return out


def training_labels(human: ImageMaps, queried: ImageMaps, seeds: Seeds | None
                    ) -> ImageMaps | SeededLabels:
    """(N, H, W) uint8: the human label where a pixel was queried, else the seed label."""
    if seeds is None:
        return human
    return SeededLabels(seeds, human, queried)
