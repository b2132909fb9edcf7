"""Fixtures for segloop.data: tiny seeded images and label maps on any fsspec URL."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from segloop.data.fs import join, url_to_fs

REAL_CAMVID = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "camvid"


def png_bytes(array: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    """Encode an array as an image file (PNG unless ``fmt`` says otherwise)."""
    img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def put(url: str, data: bytes) -> str:
    """Write bytes at a URL or path, creating parent folders; returns the URL."""
    fs, path = url_to_fs(url)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, data)
    return url


def write_camvid(
    root: str,
    splits: dict[str, int],
    hw: tuple[int, int] = (6, 8),
    seed: int = 0,
    num_classes: int = 11,
    ignore: int = 11,
) -> dict[str, list[str]]:
    """Write ``<split>/`` RGB PNGs and ``<split>annot/`` id maps; returns names per split."""
    rng = np.random.default_rng(seed)
    names: dict[str, list[str]] = {}
    for split, n in splits.items():
        fs, path = url_to_fs(root)
        fs.makedirs(f"{path}/{split}", exist_ok=True)
        fs.makedirs(f"{path}/{split}annot", exist_ok=True)
        names[split] = []
        for i in reversed(range(n)):  # written out of order: listing must sort
            image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
            label = rng.integers(0, num_classes, hw, dtype=np.uint8)
            label[0, 0] = ignore
            name = f"{split}_{i:03d}.png"
            put(join(root, split, name), png_bytes(image))
            put(join(root, f"{split}annot", name), png_bytes(label))
            names[split].append(name)
        names[split].sort()
    return names


@pytest.fixture
def png() -> Callable[..., bytes]:
    return png_bytes


@pytest.fixture
def put_file() -> Callable[[str, bytes], str]:
    return put


@pytest.fixture
def make_camvid_tree() -> Callable[..., dict[str, list[str]]]:
    return write_camvid


@pytest.fixture
def memory_root() -> Iterator[str]:
    """A fresh ``memory://`` folder, removed after the test."""
    name = f"segloop-test-{uuid.uuid4().hex[:10]}"
    yield f"memory://{name}"
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


@pytest.fixture
def real_camvid() -> Path:
    """The real CamVid under ../shared/datasets/camvid (skipped if absent)."""
    if not (REAL_CAMVID / "train").is_dir() or not (REAL_CAMVID / "trainannot").is_dir():
        pytest.skip(f"real CamVid not on this machine: {REAL_CAMVID} is absent")
    return REAL_CAMVID
