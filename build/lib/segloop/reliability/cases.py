"""Tiny pipelines for the fault-injection suite: one per flow, all on generated data and
tiny random models, each a few seconds of work with several commit points.

:func:`pipeline` writes a flow's config file for a case folder ``base`` (workspace, DVC
remote, reports and a generated CamVid all live under it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from segloop.testing import write_camvid

FLOWS = ("smoke", "synthesize", "embed", "active_learning", "pseudolabel", "usam")

#: What a flow needs run before it (uninterrupted) in the same case folder.
PREREQUISITES: dict[str, tuple[str, ...]] = {"pseudolabel": ("embed",)}


def _base(base: Path) -> dict[str, Any]:
    return {
        "base": {"seed": 3, "paths": {"workspace": str(base / "ws"),
                                      "dvc_remote": str(base / "remote"),
                                      "reports": str(base / "reports"),
                                      "prefect_home": str(base / "prefect")}},
        "data": {"root": str(base / "camvid"), "split": "train"},
        "models": {"sam": {"variant": "tiny"}, "diffusion": {"model_id": "tiny", "seed": 3},
                   "clip": {"model_id": "tiny"}},
    }


SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {"smoke": {"n_images": 6, "label_fraction": 0.25}},
    "synthesize": {"synth": {"dataset": "toy", "classes": ["car", "tree"],
                             "images_per_class": 3, "batch_size": 2, "chunk_size": 2,
                             "steps": 2, "contact_per_class": 2}},
    "embed": {"embed": {"shard_size": 4, "compile": False}},
    "active_learning": {
        "train": {"model": "unet", "width": 4, "depth": 2, "steps": 4, "batch_size": 2},
        "active": {"image_size": [24, 32], "rounds": 2, "initial_fraction": 0.2,
                   "budget_per_round": 0.2, "strategy": "entropy", "compare_random": False},
    },
    "pseudolabel": {
        "embed": {"shard_size": 4, "compile": False},
        "pseudolabel": {"method": "sam_clip", "chunk_size": 4, "conf": 0.0, "side_by_side": 2,
                        "sam_clip": {"score": "probability", "threshold": 0.0}},
    },
    "usam": {
        "synth": {"dataset": "toy", "classes": ["car", "tree"], "images_per_class": 3,
                  "batch_size": 3, "chunk_size": 3, "steps": 2, "filter_threshold": 0.0},
        "embed": {"shard_size": 4, "compile": False},
        "pseudolabel": {"chunk_size": 4, "conf": 0.0, "side_by_side": 2,
                        "usam": {"hidden": 32, "epochs": 2, "batch_size": 4}},
    },
}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def prepare(base: Path) -> None:
    """The generated CamVid of a case folder (train 10, val 4 images, 24x32)."""
    if not (base / "camvid").is_dir():
        write_camvid(str(base / "camvid"), {"train": 10, "val": 4}, hw=(24, 32))


def pipeline(flow: str, base: Path) -> Path:
    """Write ``base/<flow>.yaml`` for ``flow`` and return its path."""
    if flow not in SETTINGS:
        raise ValueError(f"no fault-suite pipeline for flow {flow!r}; flows: {FLOWS}")
    prepare(base)
    path = base / f"{flow}.yaml"
    path.write_text(yaml.safe_dump(_merge(_base(base), SETTINGS[flow]), sort_keys=False))
    return path
