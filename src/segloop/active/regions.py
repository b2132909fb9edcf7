"""Region maps for region-level queries: SLIC superpixels, SAM masks, and their quality.

A region map is an (H, W) int32 array of consecutive ids 0..R-1; every pixel belongs to
exactly one region. Regions need not be connected (a relabelled map keeps whatever the
source gave).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import slic

from segloop.errors import ConfigError, DataError


def relabel_consecutive(regions: np.ndarray) -> tuple[np.ndarray, int]:
    """Map the distinct ids of an (H, W) integer map to 0..R-1 in ascending order of the
    original id (deterministic). Returns the (H, W) int32 map and R."""
    arr = np.asarray(regions)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"regions must be an (H, W) integer array, got {arr.dtype} {arr.shape}")
    uniq, inverse = np.unique(arr, return_inverse=True)
    return inverse.reshape(arr.shape).astype(np.int32), int(uniq.size)


def slic_regions(image: np.ndarray, n_segments: int = 150, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels of an (H, W, 3) uint8 RGB image -> (H, W) int32 ids 0..R-1.

    Deterministic (SLIC has no random state); R is near, not exactly, ``n_segments``.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise DataError(f"image must be (H, W, 3) uint8 RGB, got {img.dtype} {img.shape}")
    if n_segments < 1 or not compactness > 0:
        raise ConfigError(
            f"slic needs n_segments >= 1 and compactness > 0, got "
            f"n_segments={n_segments}, compactness={compactness}"
        )
    labels = slic(
        img, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1
    )
    return relabel_consecutive(labels)[0]


def masks_to_regions(masks: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """Turn (K, H, W) bool masks (may overlap, may leave holes) into an (H, W) int32 map.

    Masks are painted in ascending ``scores`` (K,) so the highest-scoring mask wins a
    contested pixel (equal scores, or ``scores=None``: the later mask wins). Each
    4-connected component of pixels covered by no mask becomes a region of its own. Ids
    are then made consecutive: masks first (in mask order, fully covered masks vanish),
    then the uncovered components in raster order of their first pixel.
    """
    m = np.asarray(masks)
    if m.ndim != 3 or not (m.dtype == bool or np.issubdtype(m.dtype, np.integer)):
        raise DataError(f"masks must be (K, H, W) bool, got {m.dtype} {m.shape}")
    m = m.astype(bool, copy=False)
    k = m.shape[0]
    if scores is None:
        order = np.arange(k)
    else:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (k,) or not np.isfinite(s).all():
            raise DataError(
                f"scores must be {k} finite numbers (one per mask), got shape {s.shape}"
            )
        order = np.argsort(s, kind="stable")
    canvas = np.full(m.shape[1:], -1, dtype=np.int64)
    for i in order:
        canvas[m[i]] = i
    holes, n_holes = ndimage.label(canvas < 0)
    if n_holes:
        canvas[holes > 0] = k + holes[holes > 0] - 1
    return relabel_consecutive(canvas)[0]


def boundary_map(ids: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool boundary pixels of an (H, W) integer map: pixels with a 4-neighbour of a
    different id (both sides of an edge are marked; the image border is not a boundary).

    ``valid`` (H, W) bool, optional: only pairs of two valid pixels count, so the frontier
    between valid and invalid pixels is no boundary and invalid pixels are never marked.
    """
    a = np.asarray(ids)
    if a.ndim != 2:
        raise DataError(f"ids must be an (H, W) map, got shape {a.shape}")
    ok = np.ones(a.shape, bool) if valid is None else np.asarray(valid, dtype=bool)
    if ok.shape != a.shape:
        raise DataError(f"valid must have the shape of ids {a.shape}, got {ok.shape}")
    out = np.zeros(a.shape, bool)
    edge = (a[:, :-1] != a[:, 1:]) & ok[:, :-1] & ok[:, 1:]
    out[:, :-1] |= edge
    out[:, 1:] |= edge
    edge = (a[:-1, :] != a[1:, :]) & ok[:-1, :] & ok[1:, :]
    out[:-1, :] |= edge
    out[1:, :] |= edge
    return out


def _near(mask: np.ndarray, epsilon: int) -> np.ndarray:
    """(H, W) bool: within Chebyshev distance ``epsilon`` of a True pixel of ``mask``."""
    if epsilon == 0:
        return mask.copy()
    return ndimage.binary_dilation(mask, structure=np.ones((2 * epsilon + 1,) * 2, bool))


def region_quality(
    regions: np.ndarray, gt: np.ndarray, ignore_index: int, *, epsilon: int = 2
) -> dict[str, float | int]:
    """Superpixel quality of an (H, W) region map against an (H, W) class map ``gt``.

    Only valid pixels (gt != ignore_index) count; N = their number, GT segments G_i are the
    classes, n_k = valid pixels of region S_k, O[k, i] = |S_k ∩ G_i|.

    - ``asa`` (achievable segmentation accuracy) = sum_k max_i O[k, i] / N: the pixel
      accuracy of giving each region its dominant class.
    - ``ue`` = sum_k (n_k - max_i O[k, i]) / N (the brief's definition; equals 1 - asa).
    - ``ue_np`` = sum_k sum_i min(O[k, i], n_k - O[k, i]) / N: Neubert and Protzel's
      undersegmentation error, Kim 2022, eq. 3.9 (comparable to its UE 0.083).

    - ``br`` (boundary recall, Kim 2022, eq. 3.10) = share of ground-truth boundary
      pixels with a region boundary pixel within ``epsilon`` pixels (Chebyshev distance:
      a (2 epsilon + 1)^2 square; the thesis writes ``< epsilon`` with its own contours, so
      values are comparable, not identical); ``bp`` (boundary precision, eq. 3.11) = share
      of region boundary pixels with a ground-truth boundary pixel within ``epsilon``.
      Boundary pixels are those of :func:`boundary_map`, counted only at valid pixels:
      a gt boundary needs two valid neighbours of different classes (a valid/ignore
      frontier is no gt boundary, so datasets with ignore bands along object outlines,
      like VOC, keep few gt boundaries); a region boundary is any id change, kept where
      the pixel is valid. With no gt boundary pixel ``br`` = 1.0 (nothing to recall);
      with no region boundary pixel ``bp`` = 1.0 (nothing imprecise).

    Also ``num_regions`` (regions with a valid pixel) and ``valid_pixels`` (N).
    """
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | np.integer) or epsilon < 0:
        raise ConfigError(f"epsilon must be an int >= 0 (pixels; thesis 2), got {epsilon!r}")
    r = np.asarray(regions)
    g = np.asarray(gt)
    if r.shape != g.shape or r.ndim != 2:
        raise DataError(f"regions and gt must be (H, W) of one shape, got {r.shape}, {g.shape}")
    valid = g != ignore_index
    n = int(valid.sum())
    if n == 0:
        raise DataError(f"gt has no valid pixel (all {ignore_index}); region_quality needs one")
    rid, num_r = relabel_consecutive(r[valid].reshape(1, -1))
    classes, cid = np.unique(g[valid], return_inverse=True)
    num_c = classes.size
    overlap = np.bincount(
        rid.ravel().astype(np.int64) * num_c + cid.ravel(), minlength=num_r * num_c
    ).reshape(num_r, num_c)
    best = overlap.max(axis=1)
    sizes = overlap.sum(axis=1)
    gt_edge = boundary_map(g, valid)
    reg_edge = boundary_map(r) & valid
    n_gt, n_reg = int(gt_edge.sum()), int(reg_edge.sum())
    br = float((gt_edge & _near(reg_edge, int(epsilon))).sum() / n_gt) if n_gt else 1.0
    bp = float((reg_edge & _near(gt_edge, int(epsilon))).sum() / n_reg) if n_reg else 1.0
    return {
        "asa": float(best.sum() / n),
        "ue": float((sizes - best).sum() / n),
        "ue_np": float(np.minimum(overlap, sizes[:, None] - overlap).sum() / n),
        "num_regions": num_r,
        "valid_pixels": n,
        "br": br,
        "bp": bp,
    }
