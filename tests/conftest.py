"""Test-wide settings and fixtures: offline, seeded, generated data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Before anything imports Prefect, the HF hub or DVC: offline and private state.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="segloop-prefect-home-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

SHARED_CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "camvid"


def make_camvid(root: Path, splits: dict[str, int], hw: tuple[int, int] = (24, 32),
                seed: int = 0, num_classes: int = 11, ignore: int = 11) -> Path:
    """Write a CamVid-layout fixture: ``<split>/`` RGB PNGs and ``<split>annot/`` id maps.

    Labels hold ids 0..num_classes-1 plus some ``ignore`` pixels; images differ in content so
    their ids differ.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
            label = rng.integers(0, num_classes, hw, dtype=np.uint8)
            label[0, :4] = ignore
            name = f"{split}_{i:04d}.png"
            Image.fromarray(image).save(root / split / name)
            Image.fromarray(label).save(root / f"{split}annot" / name)
    return root


@pytest.fixture
def camvid_root(tmp_path: Path) -> Path:
    """A small generated CamVid folder: train (10 images) and val (4), 24x32."""
    return make_camvid(tmp_path / "camvid", {"train": 10, "val": 4})


@pytest.fixture
def shared_camvid() -> Path:
    """The real CamVid under ../shared (skips if this checkout has no shared/ beside it)."""
    if not (SHARED_CAMVID / "train").is_dir():
        pytest.skip(f"real CamVid not found at {SHARED_CAMVID}")
    return SHARED_CAMVID
