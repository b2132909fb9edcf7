"""Greedy "low-first" feature clustering into superpixels (Kim 2022, ch. 3.3.1;
docs/algorithms.md §3, steps 1-2).

Per-patch features f_p (e.g. DINO keys or SAM's image embedding) are L2-normalised;
A = f f^T is their cosine similarity and B = [A > 0] links patches with a positive one.
While patches remain, the seed p* is the remaining patch of lowest degree
d_p = sum_q B[p, q] over the remaining q (so the smallest object, or part, is found
first); its superpixel is every remaining q with A[p*, q] > tau, and it is removed.
There is no preset number of clusters: tau sets the granularity (thesis default 0.3,
about 29 groups per VOC image).

Memory is O(N^2) in the number of patches N: A is held as an (N, N) float32 matrix, i.e.
4 N^2 bytes (64 MiB for a 64 x 64 grid, N = 4096; 1 GiB at the default limit
N = 16384), plus a transient (N, N) bool (N^2 bytes) for the initial degrees. Pool a
finer feature map to a coarser grid before clustering.
"""

from __future__ import annotations

import numpy as np

from segloop.active.regions import relabel_consecutive
from segloop.errors import ConfigError, DataError

#: Default cap on the number of points (patches) :func:`greedy_clusters` accepts.
MAX_POINTS = 16384


def greedy_clusters(
    features: np.ndarray, tau: float = 0.3, max_points: int = MAX_POINTS
) -> np.ndarray:
    """Cluster N feature vectors greedily, lowest-degree seed first (Kim 2022, eq. 3.1-3.2).

    Args:
        features: (N, D) float, one row per patch; rows are L2-normalised here, so only
            directions matter. Every row must be finite and non-zero: a zero row has no
            direction (its cosine is undefined), so it raises a :class:`DataError` rather
            than being silently grouped; drop or mask such patches (e.g. padding) first.
        tau: cosine threshold: the seed's cluster is every remaining q with
            A[p*, q] > tau (strict). The seed itself always joins, whatever tau.
        max_points: the largest N accepted (memory is 4 N^2 bytes, see the module doc).

    Returns:
        (N,) int32 cluster ids 0..K-1, numbered in order of creation (cluster 0 was seeded
        by the lowest-degree patch). Each point gets exactly one id.

    Degree ties go to the lowest index. Degrees are kept up to date incrementally: when a
    cluster S is removed, each point's degree loses its count of B[p, q] over q in S.
    """
    f = np.asarray(features)
    if f.ndim != 2 or not (np.issubdtype(f.dtype, np.floating)
                           or np.issubdtype(f.dtype, np.integer)):
        raise DataError(f"features must be an (N, D) float array, got {f.dtype} {f.shape}")
    if not np.isfinite(float(tau)):
        raise ConfigError(f"tau must be a finite cosine threshold (default 0.3), got {tau}")
    n, d = f.shape
    if n > max_points:
        raise DataError(
            f"greedy_clusters got N = {n} points, more than max_points = {max_points}: its "
            f"(N, N) float32 affinity would take {4 * n * n / 2**20:.0f} MiB; pool the "
            f"features to a coarser grid (e.g. average-pool 2 x 2) or raise max_points"
        )
    if n == 0:
        return np.zeros(0, np.int32)
    if d == 0:
        raise DataError("features have D = 0 dimensions; greedy_clusters needs D >= 1")
    f64 = f.astype(np.float64)
    if not np.isfinite(f64).all():
        bad = np.flatnonzero(~np.isfinite(f64).all(axis=1))
        raise DataError(f"features rows {bad[:5].tolist()} (of {bad.size}) are not finite "
                        "(NaN or inf); fix the feature extraction")
    norms = np.linalg.norm(f64, axis=1)
    zero = norms <= 1e-12
    if zero.any():
        bad = np.flatnonzero(zero)
        raise DataError(
            f"features rows {bad[:5].tolist()} ({bad.size} in all) have zero norm, so their "
            "cosine similarity is undefined; drop or mask those patches (e.g. padding) "
            "before clustering"
        )
    unit = (f64 / norms[:, None]).astype(np.float32)
    affinity = unit @ unit.T  # (N, N) float32
    degree = (affinity > 0).sum(axis=1, dtype=np.int64)  # (N,), self included
    remaining = np.ones(n, bool)
    ids = np.full(n, -1, np.int32)
    big = np.iinfo(np.int64).max
    k = 0
    while remaining.any():
        seed = int(np.argmin(np.where(remaining, degree, big)))  # first index on ties
        members = remaining & (affinity[seed] > tau)
        members[seed] = True
        ids[members] = k
        remaining &= ~members
        cols = np.flatnonzero(members)
        degree -= (affinity[:, cols] > 0).sum(axis=1, dtype=np.int64)
        k += 1
    return ids


def _nearest_index(src: int, dst: int) -> np.ndarray:
    """(dst,) int64 source index of each output cell, sampling at pixel centres."""
    return np.minimum(((np.arange(dst) + 0.5) * src / dst).astype(np.int64), src - 1)


def cluster_feature_map(
    features: np.ndarray,
    tau: float,
    out_hw: tuple[int, int] | None = None,
    max_points: int = MAX_POINTS,
) -> np.ndarray:
    """Greedy clusters of a (D, h, w) feature map as an (h, w) or ``out_hw`` region map.

    Args:
        features: (D, h, w) float per-patch features (channels first).
        tau: cosine threshold of :func:`greedy_clusters` (thesis default 0.3).
        out_hw: (H, W) to resize the map to, nearest-neighbour with pixel-centre sampling
            (output pixel y reads row floor((y + 0.5) h / H)); None keeps (h, w).
        max_points: passed to :func:`greedy_clusters` (h * w must not exceed it).

    Returns:
        (h, w) or (H, W) int32 consecutive ids 0..R-1, in the order the clusters were
        created (a cluster no output pixel samples when shrinking is dropped and the
        later ids close up).
    """
    f = np.asarray(features)
    if f.ndim != 3:
        raise DataError(f"features must be a (D, h, w) feature map, got shape {f.shape}")
    d, h, w = f.shape
    if h == 0 or w == 0:
        raise DataError(f"feature map has an empty grid {h} x {w}; it needs h, w >= 1")
    ids = greedy_clusters(f.reshape(d, h * w).T, tau, max_points=max_points).reshape(h, w)
    if out_hw is not None:
        if len(out_hw) != 2 or min(int(out_hw[0]), int(out_hw[1])) < 1:
            raise ConfigError(f"out_hw must be (H, W) with H, W >= 1, got {out_hw}")
        rows = _nearest_index(h, int(out_hw[0]))
        cols = _nearest_index(w, int(out_hw[1]))
        ids = ids[rows[:, None], cols[None, :]]
    return relabel_consecutive(ids)[0]
