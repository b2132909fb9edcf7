"""Datasets addressed by fsspec URLs (local paths, ``file://``, ``memory://``, ``s3://``...).

Listing is lazy (nothing is read until :meth:`samples` or iteration) and cheap (one
listing call per folder, no image decoding). :meth:`load` reads and validates one sample.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from fsspec import AbstractFileSystem

from segloop.data.classes import ClassSpec
from segloop.data.fs import join, to_url, url_to_fs
from segloop.data.ids import image_id
from segloop.data.images import read_image_bytes, read_label
from segloop.errors import DataError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
)
"""File extensions treated as images (compared case-insensitively)."""

FORMATS = ("camvid", "folder", "manifest", "voc")
_MAX_LISTED = 5


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


class _Base:
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


class CamVidLayout(_Base):
    """CamVid-style folders: images in ``<root>/<split>/``, labels in ``<root>/<split>annot/``.

    Labels have the image's file name (or, failing that, its stem with ``.png``). Any
    split name works (``train``, ``val``, ``test``, ``round_001``...).
    """

    def __init__(
        self,
        root: str,
        split: str,
        classes: ClassSpec,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.split = split
        self.classes = classes
        self.storage_options = dict(storage_options or {})
        self._fs, root_path = _open_root(
            root,
            self.storage_options,
            hint=f"set data.root to the folder holding {split}/ and {split}annot/ (or to "
            "'auto' to find or download CamVid)",
        )
        self._root_path = root_path.rstrip("/") or "/"
        self._image_dir = posixpath.join(self._root_path, split)
        self._label_dir = self._image_dir + "annot"
        if not split or "/" in split.strip("/") or not self._fs.isdir(self._image_dir):
            existing = self.existing_splits()
            raise DataError(
                f"split {split!r} not found: {self._url(self._image_dir)} is not a folder. "
                f"Splits under {root}: {existing or 'none'} (a split is a folder X with a "
                "sibling Xannot); set data.split to one of them or put the images there"
            )
        if not self._fs.isdir(self._label_dir):
            raise DataError(
                f"label folder {self._url(self._label_dir)} is missing for split {split!r}; "
                f"put the label maps there with the file names of {self._url(self._image_dir)}"
            )

    def existing_splits(self) -> list[str]:
        """Folders ``X`` under the root that have a sibling ``Xannot``, sorted."""
        names = {posixpath.basename(p.rstrip("/")) for p in _list_dirs(self._fs, self._root_path)}
        return sorted(n for n in names if n + "annot" in names)

    def _collect(self) -> list[Sample]:
        images = _list_files(self._fs, self._image_dir)
        images = {n: p for n, p in images.items() if is_image_name(n)}
        if not images:
            raise DataError(
                f"no images in {self._url(self._image_dir)} (extensions: "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}); put the images there or fix "
                "data.root / data.split"
            )
        labels = _list_files(self._fs, self._label_dir)
        samples, missing = [], []
        for name in sorted(images):
            stem_png = posixpath.splitext(name)[0] + ".png"
            label_path = labels.get(name) or labels.get(stem_png)
            if label_path is None:
                missing.append(name)
                continue
            samples.append(Sample(name, self._url(images[name]), self._url(label_path)))
        if missing:
            first = missing[0]
            expected = self._url(posixpath.join(self._label_dir, first))
            others = f" ({len(missing)} images lack labels: {missing[:_MAX_LISTED]})"
            raise DataError(
                f"image {self._url(images[first])} has no label: expected {expected}"
                + (others if len(missing) > 1 else "")
                + "; add the label maps or move the unlabelled images to the unlabelled pool"
            )
        return samples


class ImageFolder(_Base):
    """An unlabelled pool: every image file under ``root`` (recursively by default).

    Sample names are paths relative to ``root``; ``label_url`` is always None.
    """

    def __init__(
        self,
        root: str,
        classes: ClassSpec | None = None,
        storage_options: dict[str, Any] | None = None,
        recursive: bool = True,
    ) -> None:
        self.root = root
        self.classes = classes
        self.storage_options = dict(storage_options or {})
        self.recursive = recursive
        self._fs, root_path = _open_root(root, self.storage_options)
        self._root_path = root_path.rstrip("/") or "/"

    def _collect(self) -> list[Sample]:
        if self.recursive:
            paths = self._fs.find(self._root_path, withdirs=False)
        else:
            paths = list(_list_files(self._fs, self._root_path).values())
        prefix = self._root_path.rstrip("/") + "/"
        found: dict[str, str] = {}
        for path in paths:
            rel = path[len(prefix) :] if path.startswith(prefix) else posixpath.basename(path)
            if is_image_name(rel) and not any(p.startswith(".") for p in rel.split("/")):
                found[rel] = path
        if not found:
            how = "recursively" if self.recursive else "at the top level"
            raise DataError(
                f"no images found {how} in {self.root} (extensions: "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}); put images there or fix the path"
            )
        return [Sample(name, self._url(found[name]), None) for name in sorted(found)]


def open_dataset(
    format: str,
    root: str,
    split: str,
    classes: ClassSpec,
    storage_options: dict[str, Any] | None = None,
    manifest_external: bool = False,
) -> Dataset:
    """Open a dataset by format name (``manifest_external``: see ``data.manifest_external``).

    ``"camvid"``: :class:`CamVidLayout` (``root``, ``split``). ``"folder"``:
    :class:`ImageFolder` over ``<root>/<split>`` (or ``root`` itself if ``split`` is "").
    ``"manifest"``: :class:`~segloop.data.manifest_dataset.ManifestDataset` (the rows of
    ``split`` in the manifest table at ``root``; "" = all rows). ``"voc"``:
    :class:`~segloop.data.voc.VOCLayout` (PASCAL VOC 2012 at ``root``, ids of ``split``).
    """
    fmt = str(format).strip().lower()
    if fmt == "camvid":
        return CamVidLayout(root, split, classes, storage_options)
    if fmt == "folder":
        folder = join(root, split.strip("/")) if split else root
        return ImageFolder(folder, classes, storage_options)
    if fmt == "manifest":
        from segloop.data.manifest_dataset import ManifestDataset  # imports the store

        return ManifestDataset(root, split, classes, storage_options,
                               external=manifest_external)
    if fmt == "voc":
        from segloop.data.voc import VOCLayout  # voc.py builds on this module

        return VOCLayout(root, split, classes, storage_options)
    raise DataError(f"unknown dataset format {format!r}; use one of {list(FORMATS)}")


def _open_root(
    root: str, storage_options: dict[str, Any], hint: str = "point it at the image folder"
) -> tuple[AbstractFileSystem, str]:
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


def _list_files(fs: AbstractFileSystem, path: str) -> dict[str, str]:
    """File name -> full path for the files directly inside ``path`` (one listing)."""
    entries = fs.ls(path, detail=True)
    return {
        posixpath.basename(e["name"].rstrip("/")): e["name"]
        for e in entries
        if e.get("type") == "file"
    }


def _list_dirs(fs: AbstractFileSystem, path: str) -> list[str]:
    return [e["name"] for e in fs.ls(path, detail=True) if e.get("type") == "directory"]
