"""Seeds from coarse class maps and superpixel-guided seeded region growing (Kim 2022,
ch. 3.3.2-3.3.3, eq. 3.3-3.7; docs/algorithms.md §3, steps 3-4).

1. :func:`normalise_maps` scales each present class map to [0, 1].
2. :func:`seeds_from_maps`: confident foreground where max_c M_c > alpha (label of the
   argmax channel); the single region with the lowest mean of max_c M_c as background;
   everything else unlabelled.
3. :func:`grow_seeds` (during training): a region's non-seed pixels take class c when c
   has the highest mean softmax over them and that mean exceeds beta. Unlike
   :mod:`segloop.active.grow`, any region may grow, adjacent to a labelled one or not.

Label maps are (H, W) uint8 with ``ignore_index`` (default 255) for unlabelled pixels.
"""

from __future__ import annotations

import numpy as np

from segloop.errors import ConfigError, DataError


def _check_ignore(ignore_index: int) -> int:
    if not 0 <= int(ignore_index) <= 255:
        raise ConfigError(f"ignore_index must fit in uint8 (0..255), got {ignore_index}")
    return int(ignore_index)


def _check_threshold(name: str, value: float) -> float:
    if not np.isfinite(float(value)):
        raise ConfigError(f"{name} must be a finite threshold, got {value}")
    return float(value)


def _region_index(regions: np.ndarray, hw: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """(H*W,) int64 index of each pixel's region in ascending-id order, and R."""
    r = np.asarray(regions)
    if r.shape != hw or not np.issubdtype(r.dtype, np.integer):
        raise DataError(f"regions must be an (H, W) integer map of shape {hw}, got "
                        f"{r.dtype} {r.shape}")
    uniq, inverse = np.unique(r.ravel(), return_inverse=True)
    return inverse.astype(np.int64), int(uniq.size)


def normalise_maps(maps: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Per-class min-max normalisation of (C, H, W) class activation maps to [0, 1].

    Args:
        maps: (C, H, W) float, finite.
        present: (C,) bool, which classes the image holds (its image-level labels); None
            means all. Absent classes become all 0 (thesis eq. 3.3).

    Returns:
        (C, H, W) float32. A present class whose map is constant (max == min) carries no
        location and becomes all 0 as well, so it can never yield a seed.
    """
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3:
        raise DataError(f"maps must be (C, H, W), got shape {m.shape}")
    if not np.isfinite(m).all():
        raise DataError("maps hold NaN or inf values; fix the class activation maps")
    c = m.shape[0]
    if present is None:
        keep = np.ones(c, bool)
    else:
        keep = np.asarray(present)
        if keep.shape != (c,) or keep.dtype != bool:
            raise DataError(f"present must be a ({c},) bool array, one flag per map, got "
                            f"{keep.dtype} {keep.shape}")
    out = np.zeros(m.shape, np.float32)
    if m.size == 0:
        return out
    lo = m.min(axis=(1, 2))
    span = m.max(axis=(1, 2)) - lo
    use = keep & (span > 0)
    out[use] = ((m[use] - lo[use, None, None]) / span[use, None, None]).astype(np.float32)
    return out


def seeds_from_maps(
    maps: np.ndarray,
    regions: np.ndarray,
    class_ids: np.ndarray,
    alpha: float = 0.5,
    background: int | None = None,
    ignore_index: int = 255,
) -> np.ndarray:
    """Initial seeds from foreground class maps (Kim 2022, eq. 3.4-3.5).

    Args:
        maps: (C, H, W) float in [0, 1] (see :func:`normalise_maps`), foreground classes
            only; C may be 0.
        regions: (H, W) int region map (e.g. :func:`segloop.pseudolabel.clustering.
            cluster_feature_map`); any integer ids.
        class_ids: (C,) int, the target class id of each map channel (0..255, not
            ``ignore_index`` nor ``background``).
        alpha: foreground threshold: a pixel is a seed when max_c maps > alpha (strict:
            a pixel at exactly alpha is not a seed); its label is class_ids[argmax_c]
            (ties: the first channel).
        background: the background class id, or None for no background seed. Otherwise
            the single region with the lowest mean of max_c maps (ties: the lowest region
            id) becomes ``background``, except its pixels that are foreground seeds: a
            pixel's own score above alpha outweighs its region's average, so those keep
            their foreground label (the thesis labels the whole superpixel; the two differ
            only when that region holds a pixel above alpha).
        ignore_index: label of every other pixel.

    Returns:
        (H, W) uint8 seed map.
    """
    ignore = _check_ignore(ignore_index)
    alpha = _check_threshold("alpha", alpha)
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3:
        raise DataError(f"maps must be (C, H, W), got shape {m.shape}")
    c, h, w = m.shape
    if not np.isfinite(m).all() or (m.size and (m.min() < 0 or m.max() > 1)):
        raise DataError("maps must be finite and in [0, 1]; normalise them first with "
                        "segloop.pseudolabel.cam_seeds.normalise_maps")
    ids = np.asarray(class_ids)
    if ids.shape != (c,) or (c and not np.issubdtype(ids.dtype, np.integer)):
        raise DataError(f"class_ids must be ({c},) ints, one per map channel, got "
                        f"{ids.dtype} {ids.shape}")
    ids = ids.astype(np.int64)
    if c and (ids.min() < 0 or ids.max() > 255 or (ids == ignore).any()):
        raise ConfigError(f"class_ids must be in 0..255 and not ignore_index {ignore}, got "
                          f"{ids.tolist()}")
    if background is not None:
        if not 0 <= int(background) <= 255 or int(background) == ignore:
            raise ConfigError(f"background must be in 0..255 and not ignore_index {ignore}, "
                              f"got {background}")
        if (ids == int(background)).any():
            raise ConfigError(f"background {background} is also a foreground class in "
                              f"class_ids {ids.tolist()}; give it a class id of its own")
    rid, num_r = _region_index(regions, (h, w))
    out = np.full(h * w, ignore, np.uint8)
    if c:
        flat = m.reshape(c, -1)
        score = flat.max(axis=0)
        fg = score > alpha
        out[fg] = ids[flat[:, fg].argmax(axis=0)].astype(np.uint8)
    else:
        score = np.zeros(h * w)
        fg = np.zeros(h * w, bool)
    if background is not None and num_r:
        mean = np.bincount(rid, weights=score, minlength=num_r) / np.bincount(
            rid, minlength=num_r)
        bg = (rid == int(np.argmin(mean))) & ~fg
        out[bg] = int(background)
    return out.reshape(h, w)


def grow_seeds(
    seeds: np.ndarray,
    regions: np.ndarray,
    probs: np.ndarray,
    beta: float = 0.7,
    ignore_index: int = 255,
) -> np.ndarray:
    """Superpixel-guided seeded region growing (Kim 2022, eq. 3.6-3.7).

    For each region, take its pixels that are not seeds (seeds == ignore_index) and the
    mean probability of each class over them; if the highest mean (ties: the lowest class)
    is > beta (strict), all those pixels get that class. Seed pixels never change; a
    region made only of seeds is left as it is. Regions are independent: growing needs no
    labelled neighbour (cf. :func:`segloop.active.grow.grow_image`).

    Args:
        seeds: (H, W) uint8 labels, ``ignore_index`` where unlabelled.
        regions: (H, W) int region map, any integer ids.
        probs: (C, H, W) float softmax; channel c is class id c (C <= ignore_index, so no
            class id collides with it).
        beta: confidence threshold (thesis default 0.7 for background and foreground).
        ignore_index: the unlabelled value.

    Returns:
        (H, W) uint8 grown labels (a new array).
    """
    ignore = _check_ignore(ignore_index)
    beta = _check_threshold("beta", beta)
    s = np.asarray(seeds)
    if s.ndim != 2 or not np.issubdtype(s.dtype, np.integer):
        raise DataError(f"seeds must be an (H, W) integer label map, got {s.dtype} {s.shape}")
    if s.size and (s.min() < 0 or s.max() > 255):
        raise DataError(f"seeds must hold uint8 labels (0..255), got values {s.min()}..{s.max()}")
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 3 or p.shape[1:] != s.shape:
        raise DataError(f"probs must be (C, H, W) with (H, W) = seeds' {s.shape}, got "
                        f"{p.shape}")
    c = p.shape[0]
    if c == 0 or c > ignore:
        raise DataError(f"probs has C = {c} classes; need 1 <= C <= ignore_index ({ignore}) "
                        "so every class id fits in uint8 and differs from ignore_index")
    if not np.isfinite(p).all():
        raise DataError("probs hold NaN or inf values; pass softmax probabilities")
    rid, num_r = _region_index(regions, s.shape)
    out = s.astype(np.uint8).ravel()  # a copy (ravel of a fresh array)
    free = s.ravel() == ignore
    if not free.any():
        return out.reshape(s.shape)
    r_free = rid[free]
    counts = np.bincount(r_free, minlength=num_r)
    flat = p.reshape(c, -1)[:, free]
    sums = np.stack([np.bincount(r_free, weights=flat[k], minlength=num_r) for k in range(c)],
                    axis=1)  # (R, C)
    mean = sums / np.maximum(counts, 1)[:, None]
    best = mean.argmax(axis=1)
    take = (counts > 0) & (mean[np.arange(num_r), best] > beta)
    grow = free & take[rid]
    out[grow] = best[rid[grow]].astype(np.uint8)
    return out.reshape(s.shape)
