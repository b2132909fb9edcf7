"""Fixtures for segloop.data: tiny seeded images and label maps on any fsspec URL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import fsspec
import pytest

from segloop.testing import png_bytes, put, write_camvid


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

