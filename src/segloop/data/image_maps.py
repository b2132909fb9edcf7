"""Per-image maps over a pool, stored only for the images that have one.

Labels, queried masks and seeds exist for the few images people (or a seed round) touched;
every other image reads as the fill value. :class:`ImageMaps` is an (N, H, W) array in
behaviour (``m[i]``, ``m[pick]``, ``m[2:5]``, ``len``, ``shape``) whose memory grows with
the touched images, not with the pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


class ImageMaps:
    """(N, H, W) maps of ``dtype``: stored rows plus ``fill`` everywhere else."""

    def __init__(self, n: int, hw: tuple[int, int], dtype: Any, fill: Any) -> None:
        self.n, self.hw = int(n), (int(hw[0]), int(hw[1]))
        self.dtype, self.fill = np.dtype(dtype), fill
        self._rows: dict[int, np.ndarray] = {}

    @classmethod
    def from_dense(cls, dense: np.ndarray | torch.Tensor, fill: Any) -> ImageMaps:
        """Rows of ``dense`` (N, H, W) that hold anything but ``fill`` are stored."""
        array = dense.numpy() if isinstance(dense, torch.Tensor) else np.asarray(dense)
        out = cls(array.shape[0], array.shape[1:3], array.dtype, fill)
        for i in np.flatnonzero((array != fill).reshape(len(array), -1).any(1)):
            out._rows[int(i)] = array[i].copy()
        return out

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n, *self.hw)

    def __len__(self) -> int:
        return self.n

    def indices(self) -> np.ndarray:
        """The stored rows' image indices, ascending (int64)."""
        return np.asarray(sorted(self._rows), dtype=np.int64)

    def items(self) -> Iterator[tuple[int, np.ndarray]]:
        """(index, row) of the stored rows, ascending."""
        for i in sorted(self._rows):
            yield i, self._rows[i]

    def row(self, index: int) -> np.ndarray:
        """The writable row of image ``index`` (made, filled, on first use)."""
        index = self._check(index)
        got = self._rows.get(index)
        if got is None:
            got = self._rows[index] = np.full(self.hw, self.fill, self.dtype)
        return got

    def __setitem__(self, index: int, value: np.ndarray) -> None:
        self.row(index)[...] = value

    def _check(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"image {index} is outside the pool of {self.n}")
        return i

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, int | np.integer):
            i = self._check(int(key))
            got = self._rows.get(i)
            return got if got is not None else np.full(self.hw, self.fill, self.dtype)
        if isinstance(key, slice):
            idx = np.arange(*key.indices(self.n))
        elif isinstance(key, torch.Tensor):
            idx = key.cpu().numpy()
        else:
            idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        out = np.full((idx.size, *self.hw), self.fill, self.dtype)
        for k, i in enumerate(idx.reshape(-1)):
            got = self._rows.get(self._check(int(i)))
            if got is not None:
                out[k] = got
        return out

    def copy(self) -> ImageMaps:
        out = ImageMaps(self.n, self.hw, self.dtype, self.fill)
        out._rows = {i: r.copy() for i, r in self._rows.items()}
        return out

    def count_per_image(self, value: Any = None) -> np.ndarray:
        """(N,) int64: pixels per image that differ from ``fill`` (or, with ``value``, that
        equal it)."""
        out = np.zeros(self.n, np.int64)
        for i, r in self._rows.items():
            out[i] = int((r == value).sum()) if value is not None else int((r != self.fill)
                                                                          .sum())
        return out


def rows_of(maps: ImageMaps | np.ndarray | torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """``maps[pick]`` as a tensor, for dense tensors and arrays and for :class:`ImageMaps`."""
    if isinstance(maps, torch.Tensor):
        return maps[pick]
    return torch.from_numpy(np.ascontiguousarray(maps[pick.cpu().numpy()]))


def labelled_counts(labels: ImageMaps | np.ndarray | torch.Tensor,
                    ignore_index: int) -> torch.Tensor:
    """(N,) float64: labelled pixels (not ``ignore_index``) per image."""
    if isinstance(labels, ImageMaps) or hasattr(labels, "count_per_image"):
        # ImageMaps, or a view indexed like one (e.g. segloop.active.seeds.SeededLabels)
        if labels.fill != ignore_index:
            raise ValueError("labelled_counts: the maps' fill must be the ignore index")
        return torch.from_numpy(labels.count_per_image()).double()
    t = labels if isinstance(labels, torch.Tensor) else torch.from_numpy(np.asarray(labels))
    return (t != ignore_index).flatten(1).sum(1).double()


def class_counts(labels: ImageMaps | np.ndarray | torch.Tensor, num_classes: int,
                 ignore_index: int) -> np.ndarray:
    """(C,) float64: labelled pixels per class over all images."""
    counts = np.zeros(num_classes, np.float64)
    rows: Any = ((r for _, r in labels.items()) if hasattr(labels, "items")  # streamed
                 else [labels.numpy() if isinstance(labels, torch.Tensor) else labels])
    for r in rows:
        flat = np.asarray(r)[np.asarray(r) != ignore_index].astype(np.int64)
        counts += np.bincount(flat, minlength=num_classes)[:num_classes]
    return counts
