"""A split at working resolution on disk: written once, in shards, read back by index.

The loop never holds a whole split in memory: it reads the images (and ground truth, and
region maps) it needs from a cache folder built once per split and settings::

    <folder>/settings.json        what made it (see :func:`cache_key`) and the shard size
    <folder>/manifest.parquet     one row per image (table ``pool_manifest``)
    <folder>/shards/images-00000.npy    (n, 3, H, W) uint8
    <folder>/shards/labels-00000.npy    (n, H, W) uint8 ground truth (splits with labels)
    <folder>/shards/regions-00000.npy   (n, H, W) int32 region ids (region-level pools)
    <folder>/shards/rows-00000.json     the shard's manifest rows (written last: it is whole)
    <folder>/num_regions.npy      (N,) int64 regions per image (region-level pools)
    <folder>/complete.json        written last: the cache is whole

Each shard is written to a temporary name and renamed, so a killed build resumes at the
first missing shard; a finished cache is only read. :class:`ShardedArray` is the read side:
``array[indices]`` loads just the shards those indices live in (memory-mapped, copied out),
so memory does not grow with the split.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from segloop.data import temp_files
from segloop.data.base import LoadedSample, Sample
from segloop.data.json_io import read_json, write_json
from segloop.errors import DataError
from segloop.train.arrays import resize_pair

SETTINGS_FILE = "settings.json"
MANIFEST = "manifest.parquet"
COMPLETE = "complete.json"
KINDS = ("images", "labels", "regions", "seeds")
FORMAT_VERSION = 1

RegionFn = Callable[[np.ndarray, list[str]], np.ndarray]
"""(n, H, W, 3) uint8 images at working size and their ids -> (n, H, W) int32 region ids
(0..R-1 per image)."""


def cache_key(settings: dict[str, Any]) -> str:
    """16 hex digits of sha256 over the settings (sorted JSON): the cache folder's name."""
    text = json.dumps({**settings, "format_version": FORMAT_VERSION}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shard_path(folder: Path, kind: str, shard: int, suffix: str = ".npy") -> Path:
    return folder / "shards" / f"{kind}-{shard:05d}{suffix}"


def save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary name, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temp_files.temp_name(path.name))
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


@dataclass(frozen=True)
class CacheInfo:
    """What a finished cache holds: N images at ``hw``, in shards of ``shard_size``."""

    folder: Path
    n: int
    hw: tuple[int, int]
    shard_size: int
    has_labels: bool
    has_regions: bool


def build_cache(folder: Path, samples: Sequence[Sample], load: Callable[[Sample], LoadedSample],
                size: tuple[int, int] | None, settings: dict[str, Any], shard_size: int = 256,
                regions: RegionFn | None = None, group: Callable[[str], str | None] | None = None,
                split: str = "", root: str = "", desc: str = "caching") -> CacheInfo:
    """Write (or finish) the cache of ``samples`` (in this order) at ``size`` (h, w).

    Each shard is written with its rows (``shards/rows-NNNNN.json``: the manifest rows of
    its images) last, so a shard whose rows exist is whole and a resumed build skips it
    without decoding its images. ``load`` decodes a sample; ``regions`` computes an image's
    region map (region-level pools); ``group`` names an image's sequence or group from its
    name (None: unknown). URIs under ``root`` are stored relative to it (the cache does not
    depend on where the dataset lies). Returns the finished cache's info.
    """
    from segloop.active.pool_manifest import write_manifest

    start_cache(folder, settings, len(samples), shard_size)
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(samples), desc=desc, unit="img", leave=False)
    for shard, start in enumerate(range(0, len(samples), shard_size)):
        part = samples[start : start + shard_size]
        done = shard_path(folder, "rows", shard, ".json")
        if done.is_file():
            rows += read_json(done, f"delete {folder} to rebuild the cache", mapping=False)
        else:
            rows += _write_shard(folder, shard, start, part, load, size, regions, group, split,
                                 root)
        bar.update(len(part))
    bar.close()
    hws = {(r["work_height"], r["work_width"]) for r in rows}
    if len(hws) != 1:
        raise DataError(f"{folder}: images differ in size at working resolution ({sorted(hws)})"
                        "; set active.image_size so that all images are resized alike")
    has_labels = all(r["has_label"] for r in rows)
    write_manifest(folder / MANIFEST, rows)
    if regions is not None:
        save_array(folder / "num_regions.npy", np.asarray([r["num_regions"] for r in rows],
                                                     np.int64))
    (h, w), = hws
    info = CacheInfo(folder, len(rows), (int(h), int(w)), shard_size, has_labels,
                     regions is not None)
    write_json(folder / COMPLETE, {"n": info.n, "hw": list(info.hw), "has_labels": has_labels,
                                   "has_regions": regions is not None})
    return info


def start_cache(folder: Path, settings: dict[str, Any], n: int, shard_size: int) -> None:
    """Create (or reopen) an unfinished cache: its settings, leftovers of killed writers
    removed. Call once before writing shards (never while shard writers run)."""
    if n == 0:
        raise DataError(f"{folder}: no images to cache")
    folder.mkdir(parents=True, exist_ok=True)
    temp_files.sweep(folder)
    write_json(folder / SETTINGS_FILE, {"settings": settings, "shard_size": shard_size,
                                        "n": n, "format_version": FORMAT_VERSION})


def shards_to_write(folder: Path, n: int, shard_size: int) -> list[int]:
    """The shards of an ``n``-image cache not written yet."""
    return [k for k in range((n + shard_size - 1) // shard_size)
            if not shard_path(folder, "rows", k, ".json").is_file()]


def write_cache_shard(folder: Path, samples: Sequence[Sample],
                      load: Callable[[Sample], LoadedSample], size: tuple[int, int] | None,
                      shard: int, shard_size: int = 256, regions: RegionFn | None = None,
                      group: Callable[[str], str | None] | None = None, split: str = "",
                      root: str = "") -> int:
    """Write shard ``shard`` of the cache of ``samples`` (after :func:`start_cache`), unless
    it is written: one mapped task's share; :func:`build_cache` then finds it done. Returns
    the images written (0 if the shard was there)."""
    if shard_path(folder, "rows", shard, ".json").is_file():
        return 0
    start = shard * shard_size
    part = samples[start : start + shard_size]
    _write_shard(folder, shard, start, part, load, size, regions, group, split, root)
    return len(part)


def _write_shard(folder: Path, shard: int, start: int, part: Sequence[Sample],
                 load: Callable[[Sample], LoadedSample], size: tuple[int, int] | None,
                 regions: RegionFn | None, group: Callable[[str], str | None] | None,
                 split: str, root: str) -> list[dict[str, Any]]:
    imgs, labs, rows = [], [], []
    for k, sample in enumerate(part):
        loaded = load(sample)
        img, lab = resize_pair(loaded.image, loaded.label, size)
        imgs.append(img)
        labs.append(lab)
        rows.append({"index": start + k, "image_id": loaded.image_id, "name": sample.name,
                     "split": split, "image_uri": _relative(sample.image_url, root),
                     "label_uri": _relative(sample.label_url, root),
                     "height": int(loaded.image.shape[0]),
                     "width": int(loaded.image.shape[1]), "work_height": int(img.shape[0]),
                     "work_width": int(img.shape[1]), "has_label": lab is not None,
                     "group": group(sample.name) if group is not None else None,
                     "num_regions": None})
    if len({im.shape for im in imgs}) != 1:
        raise DataError(f"{folder}: images {part[0].name}..{part[-1].name} differ in size at "
                        "working resolution; set active.image_size")
    save_array(shard_path(folder, "images", shard),
               np.ascontiguousarray(np.stack(imgs).transpose(0, 3, 1, 2)))
    if all(lab is not None for lab in labs):
        save_array(shard_path(folder, "labels", shard), np.stack(labs))
    if regions is not None:
        maps = np.asarray(regions(np.stack(imgs), [row["image_id"] for row in rows]))
        for row, m in zip(rows, maps, strict=True):
            row["num_regions"] = int(m.max()) + 1
        save_array(shard_path(folder, "regions", shard), maps.astype(np.int32))
    write_json(shard_path(folder, "rows", shard, ".json"), rows)
    return rows


def _relative(uri: str | None, root: str) -> str | None:
    """``uri`` relative to ``root`` when it lies under it (posix separators), else as is."""
    if uri is None or not root:
        return uri
    base = root.rstrip("/") + "/"
    return uri[len(base):] if uri.startswith(base) else uri


def open_cache(folder: Path) -> CacheInfo | None:
    """The info of a finished cache at ``folder``, or None if it is missing or unfinished."""
    if not (folder / COMPLETE).is_file():
        return None
    done = read_json(folder / COMPLETE, f"delete {folder} to rebuild the cache")
    meta = read_json(folder / SETTINGS_FILE, f"delete {folder} to rebuild the cache")
    return CacheInfo(folder, int(done["n"]), (int(done["hw"][0]), int(done["hw"][1])),
                     int(meta["shard_size"]), bool(done["has_labels"]),
                     bool(done["has_regions"]))


class ShardedArray:
    """An (N, ...) array kept in shard files, indexed like a tensor: ``a[i]``, ``a[2:9]``,
    ``a[tensor_of_indices]``. Returns torch tensors (``as_tensor``) or numpy arrays; only
    the shards holding the asked-for rows are read (memory-mapped, then copied)."""

    def __init__(self, info: CacheInfo, kind: str, as_tensor: bool = True) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown cache array {kind!r}; one of {KINDS}")
        self.info, self.kind, self.as_tensor = info, kind, as_tensor
        first = self._shard(0)
        self._row_shape = tuple(first.shape[1:])
        self.dtype = first.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.info.n, *self._row_shape)

    def __len__(self) -> int:
        return self.info.n

    def _shard(self, shard: int) -> np.ndarray:
        path = shard_path(self.info.folder, self.kind, shard)
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: cannot read the pool cache shard ({err}); delete "
                            f"{self.info.folder} and run again to rebuild it") from None

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """The rows at ``indices`` (any order, repeats allowed) as one numpy array."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.info.n):
            raise IndexError(f"index out of range for {self.kind} of {self.info.n} images")
        out = np.empty((idx.size, *self._row_shape), self.dtype)
        shard_of = idx // self.info.shard_size
        for shard in np.unique(shard_of):
            where = np.nonzero(shard_of == shard)[0]
            data = self._shard(int(shard))
            out[where] = data[idx[where] - shard * self.info.shard_size]
            del data
        return out

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            idx = np.arange(*key.indices(self.info.n))
        elif isinstance(key, int | np.integer):
            k = int(key) + (self.info.n if int(key) < 0 else 0)
            got = self.rows(np.asarray([k]))[0]
            return torch.from_numpy(got) if self.as_tensor else got
        elif isinstance(key, torch.Tensor):
            idx = key.cpu().numpy()
        else:
            idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.nonzero(idx)[0]
        got = self.rows(idx)
        return torch.from_numpy(got) if self.as_tensor else got

    def batches(self, batch_size: int) -> Iterator[tuple[slice, Any]]:
        """(slice, rows) over the whole array in order, ``batch_size`` rows at a time."""
        for start in range(0, self.info.n, batch_size):
            sl = slice(start, min(start + batch_size, self.info.n))
            yield sl, self[sl]
