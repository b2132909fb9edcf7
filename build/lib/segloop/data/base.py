"""What every dataset layout shares: samples, the dataset protocol, the base class that
loads and validates a sample, and listing helpers over fsspec file systems.

The layouts (:mod:`segloop.data.datasets`, :mod:`segloop.data.voc`,
:mod:`segloop.data.manifest_dataset`) build on this module; ``open_dataset`` picks one.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from fsspec import AbstractFileSystem

from segloop.data.classes import ClassSpec
from segloop.data.fs import to_url, url_to_fs
from segloop.data.ids import image_id
from segloop.data.images import read_image_bytes, read_label
from segloop.errors import DataError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
)
"""File extensions treated as images (compared case-insensitively)."""

MAX_LISTED = 5
"""How many names an error message lists."""


@dataclass(frozen=True)
class Sample:
    """One listed sample: a name unique in its dataset and the URLs of its files."""

    name: str
    image_url: str
    label_url: str | None


@dataclass(frozen=True)
class LoadedSample:
    """A decoded sample: image (H, W, 3) uint8 RGB, label (H, W) uint8 ids or None.

    ``image_id`` is the content hash of the image file (:func:`segloop.data.ids.image_id`).
    """

    sample: Sample
    image_id: str
    image: np.ndarray
    label: np.ndarray | None


class Dataset(Protocol):
    """What every dataset layout offers."""

    def samples(self) -> Iterator[Sample]: ...

    def load(self, sample: Sample) -> LoadedSample: ...

    def __iter__(self) -> Iterator[LoadedSample]: ...

    def __len__(self) -> int: ...


def is_image_name(name: str) -> bool:
    """True if ``name`` has an image extension and is not a hidden file."""
    base = posixpath.basename(name)
    return not base.startswith(".") and posixpath.splitext(base)[1].lower() in IMAGE_EXTENSIONS


class DatasetBase:
    """A layout: subclasses list their samples (``_collect``); loading is shared."""

    classes: ClassSpec | None
    storage_options: dict[str, Any]
    _fs: AbstractFileSystem

    def samples(self) -> Iterator[Sample]:
        """Samples sorted by name (the listing happens here, errors raise here)."""
        return iter(self._collect())

    def _collect(self) -> list[Sample]:
        raise NotImplementedError

    def load(self, sample: Sample) -> LoadedSample:
        """Read one sample: image, its content id and (if any) its validated label."""
        image, raw = read_image_bytes(sample.image_url, self.storage_options)
        label = None
        if sample.label_url is not None:
            if self.classes is None:
                raise DataError(
                    f"{sample.label_url}: reading labels needs a class spec; pass classes="
                )
            label = read_label(
                sample.label_url,
                self.classes,
                expected_hw=(image.shape[0], image.shape[1]),
                image_url=sample.image_url,
                storage_options=self.storage_options,
            )
        return LoadedSample(sample=sample, image_id=image_id(raw), image=image, label=label)

    def __iter__(self) -> Iterator[LoadedSample]:
        for sample in self.samples():
            yield self.load(sample)

    def __len__(self) -> int:
        return len(self._collect())

    def _url(self, path: str) -> str:
        return to_url(self._fs, path)


def open_root(
    root: str, storage_options: dict[str, Any], hint: str = "point it at the image folder"
) -> tuple[AbstractFileSystem, str]:
    """The file system and path of a dataset root that must be an existing folder."""
    try:
        fs, path = url_to_fs(root, **storage_options)
    except (ValueError, ImportError) as err:
        raise DataError(
            f"cannot open {root}: {err}; fix the URL or install the fsspec backend for its "
            "protocol (e.g. s3fs for s3://, gcsfs for gs://)"
        ) from err
    if not fs.isdir(path):
        what = "is a file, not a folder" if fs.exists(path) else "does not exist"
        raise DataError(f"dataset root {root} {what}; {hint}")
    return fs, path


def list_files(fs: AbstractFileSystem, path: str) -> dict[str, str]:
    """File name -> full path for the files directly inside ``path`` (one listing)."""
    entries = fs.ls(path, detail=True)
    return {
        posixpath.basename(e["name"].rstrip("/")): e["name"]
        for e in entries
        if e.get("type") == "file"
    }


def list_dirs(fs: AbstractFileSystem, path: str) -> list[str]:
    """Full paths of the folders directly inside ``path`` (one listing)."""
    return [e["name"] for e in fs.ls(path, detail=True) if e.get("type") == "directory"]
