"""A shard's pool scan on disk: what a mapped scoring task hands back (a path, not arrays).

One ``.npz`` per shard, written to a temporary name and renamed, so a killed task leaves
no half-written file and a rerun skips the shards already scanned.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from segloop.active.scoring import PoolScan
from segloop.active.selection import Unit

_UNIT_FIELDS = ("image_index", "region_id", "pixels", "score", "pred_class")
_ARRAYS = ("features", "class_fractions", "gradients")


def save_scan(path: Path, scan: PoolScan) -> Path:
    """Write ``scan`` (units as columns; features, class shares, gradients as float32
    arrays where present) to ``path`` atomically; returns ``path``."""
    cols = {f: np.array([getattr(u, f) for u in scan.units],
                        dtype=np.float64 if f == "score" else np.int64) for f in _UNIT_FIELDS}
    arrays = {name: getattr(scan, name).numpy() for name in _ARRAYS
              if getattr(scan, name) is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **cols, **arrays)
    os.replace(tmp, path)
    return path


def load_scan(path: Path) -> PoolScan:
    """The :class:`PoolScan` :func:`save_scan` wrote (the same units, bit for bit)."""
    with np.load(path) as z:
        cols = [z[f].tolist() for f in _UNIT_FIELDS]
        units = [Unit(int(i), int(r), int(p), float(s), int(c))
                 for i, r, p, s, c in zip(*cols, strict=True)]
        arrays = {name: torch.from_numpy(z[name].copy()) if name in z.files else None
                  for name in _ARRAYS}
    return PoolScan(units, **arrays)
