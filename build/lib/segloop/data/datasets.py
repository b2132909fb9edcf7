"""Dataset layouts addressed by fsspec URLs (local paths, ``file://``, ``memory://``,
``s3://``...), and :func:`open_dataset`, which opens one by format name.

Listing is lazy (nothing is read until :meth:`samples` or iteration) and cheap (one
listing call per folder, no image decoding). :meth:`load` reads and validates one sample.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from segloop.data.base import (
    IMAGE_EXTENSIONS,
    MAX_LISTED,
    Dataset,
    DatasetBase,
    Sample,
    is_image_name,
    list_dirs,
    list_files,
    open_root,
)
from segloop.data.classes import ClassSpec
from segloop.data.fs import join
from segloop.data.manifest_dataset import ManifestDataset
from segloop.data.voc import VOCLayout
from segloop.errors import DataError


class CamVidLayout(DatasetBase):
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
        self._fs, root_path = open_root(
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
        names = {posixpath.basename(p.rstrip("/")) for p in list_dirs(self._fs, self._root_path)}
        return sorted(n for n in names if n + "annot" in names)

    def _collect(self) -> list[Sample]:
        images = list_files(self._fs, self._image_dir)
        images = {n: p for n, p in images.items() if is_image_name(n)}
        if not images:
            raise DataError(
                f"no images in {self._url(self._image_dir)} (extensions: "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}); put the images there or fix "
                "data.root / data.split"
            )
        labels = list_files(self._fs, self._label_dir)
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
            others = f" ({len(missing)} images lack labels: {missing[:MAX_LISTED]})"
            raise DataError(
                f"image {self._url(images[first])} has no label: expected {expected}"
                + (others if len(missing) > 1 else "")
                + "; add the label maps or move the unlabelled images to the unlabelled pool"
            )
        return samples


class ImageFolder(DatasetBase):
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
        self._fs, root_path = open_root(root, self.storage_options)
        self._root_path = root_path.rstrip("/") or "/"

    def _collect(self) -> list[Sample]:
        if self.recursive:
            paths = self._fs.find(self._root_path, withdirs=False)
        else:
            paths = list(list_files(self._fs, self._root_path).values())
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
    if fmt not in LAYOUTS:
        raise DataError(f"unknown dataset format {format!r}; use one of {list(FORMATS)}")
    return LAYOUTS[fmt](root, split, classes, storage_options or {}, manifest_external)


def _folder(root: str, split: str, classes: ClassSpec, storage_options: dict[str, Any],
            external: bool) -> Dataset:
    return ImageFolder(join(root, split.strip("/")) if split else root, classes,
                       storage_options)


LAYOUTS: dict[str, Callable[[str, str, ClassSpec, dict[str, Any], bool], Dataset]] = {
    "camvid": lambda root, split, classes, so, external: CamVidLayout(root, split, classes, so),
    "folder": _folder,
    "manifest": lambda root, split, classes, so, external: ManifestDataset(
        root, split, classes, so, external=external),
    "voc": lambda root, split, classes, so, external: VOCLayout(root, split, classes, so),
}
"""The one registry of dataset formats: name -> opener (root, split, classes,
storage options, manifest_external)."""

FORMATS = tuple(LAYOUTS)
