"""PASCAL VOC 2012 segmentation: ``data.format: voc``.

The layout of the official ``VOCtrainval_11-May-2012.tar`` (``VOCdevkit/VOC2012/``)::

    JPEGImages/<id>.jpg                  the images
    SegmentationClass/<id>.png           palette PNGs: the palette *index* is the class id
                                         (0 background, 1..20 the classes, 255 void border)
    ImageSets/Segmentation/<split>.txt   one image id per line (train, val, trainval)

Labels are read by :func:`segloop.data.images.read_label`, which keeps the palette indices
of ``P`` mode PNGs (the colours are ignored), so they match the built-in ``voc`` class spec.
Nothing is downloaded: set ``data.root`` to the extracted folder.
"""

from __future__ import annotations

import posixpath
from typing import Any

from segloop.data.base import MAX_LISTED, DatasetBase, Sample, list_files, open_root
from segloop.data.classes import ClassSpec
from segloop.errors import DataError

VOC_DOWNLOAD_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
"""The official VOC 2012 train+val archive (about 2 GB; extracts to ``VOCdevkit/VOC2012``)."""

IMAGE_DIR = "JPEGImages"
LABEL_DIR = "SegmentationClass"
SPLIT_DIR = "ImageSets/Segmentation"

_REQUIRED_DIRS = (IMAGE_DIR, LABEL_DIR, SPLIT_DIR)
# Where a VOC2012 folder may sit below data.root: the folder itself, VOCdevkit/ (holding
# VOC2012/) or the folder the archive was extracted into (holding VOCdevkit/VOC2012/).
_ROOT_CANDIDATES = ("", "VOC2012", "VOCdevkit/VOC2012")
_UNLABELLED_SPLITS = frozenset({"test"})


def voc_root_hint() -> str:
    """How to point ``data.root`` at VOC 2012 (used in error messages)."""
    return (
        "set data.root to the VOC2012 folder (holding JPEGImages/, SegmentationClass/ and "
        "ImageSets/Segmentation/) or to a folder holding VOCdevkit/VOC2012; segloop does not "
        f"download VOC: get and extract {VOC_DOWNLOAD_URL}"
    )


class VOCLayout(DatasetBase):
    """PASCAL VOC 2012 segmentation: the ids of ``ImageSets/Segmentation/<split>.txt``.

    ``root`` is the ``VOC2012`` folder or a folder above it (``VOCdevkit/`` or the folder
    holding ``VOCdevkit/VOC2012``). Sample names are the image ids (sorted); images are
    ``JPEGImages/<id>.jpg`` and labels ``SegmentationClass/<id>.png`` (``label_url`` is
    None for an id without a label file, as in the VOC test split). ``SegmentationClass/``
    may only be missing for the ``test`` split.
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
        if str(root).strip().lower() == "auto":
            raise DataError(f"data.root 'auto' is not supported for VOC; {voc_root_hint()}")
        self._fs, root_path = open_root(root, self.storage_options, hint=voc_root_hint())
        self._voc_path = self._find_voc_dir(root_path.rstrip("/") or "/")
        self._image_dir = posixpath.join(self._voc_path, IMAGE_DIR)
        self._label_dir = posixpath.join(self._voc_path, LABEL_DIR)
        self._split_dir = posixpath.join(self._voc_path, SPLIT_DIR)
        available = self.existing_splits()
        if not split or "/" in split or split not in available:
            raise DataError(
                f"VOC split {split!r} not found: no "
                f"{self._url(posixpath.join(self._split_dir, f'{split}.txt'))}. Splits there: "
                f"{available or 'none'} (from the .txt files); set data.split to one of them"
            )
        self._split_file = posixpath.join(self._split_dir, f"{split}.txt")
        self._has_labels = self._fs.isdir(self._label_dir)
        if not self._has_labels and split not in _UNLABELLED_SPLITS:
            raise DataError(
                f"label folder {self._url(self._label_dir)} is missing for VOC split "
                f"{split!r}; extract the VOC2012 train+val archive ({VOC_DOWNLOAD_URL}) there"
            )

    @property
    def voc_dir(self) -> str:
        """URL of the detected ``VOC2012`` folder."""
        return self._url(self._voc_path)

    def existing_splits(self) -> list[str]:
        """Split names: the ``.txt`` files in ``ImageSets/Segmentation/``, sorted."""
        files = list_files(self._fs, self._split_dir)
        return sorted(
            posixpath.splitext(n)[0]
            for n in files
            if n.endswith(".txt") and not n.startswith(".")
        )

    def _find_voc_dir(self, root_path: str) -> str:
        looked = []
        for sub in _ROOT_CANDIDATES:
            path = posixpath.join(root_path, sub) if sub else root_path
            missing = [d for d in _REQUIRED_DIRS if not self._fs.isdir(posixpath.join(path, d))]
            # A test-only tree has no SegmentationClass/: accept it, __init__ checks the split.
            if not missing or missing == [LABEL_DIR]:
                return path
            looked.append(f"{self._url(path)} (missing {', '.join(d + '/' for d in missing)})")
        raise DataError(
            f"no PASCAL VOC 2012 folder found under {self.root}: looked for "
            f"{', '.join(d + '/' for d in _REQUIRED_DIRS)} in " + "; ".join(looked)
            + f"; {voc_root_hint()}"
        )

    def _read_ids(self) -> list[str]:
        try:
            with self._fs.open(self._split_file, "rb") as fh:
                text = fh.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(
                f"cannot read VOC split file {self._url(self._split_file)}: {err}; "
                "re-extract it (one image id per line)"
            ) from err
        # One id per line; ImageSets/Main-style "<id> <flag>" lines keep their first column.
        ids = {line.split()[0] for line in text.splitlines() if line.strip()}
        if not ids:
            raise DataError(
                f"VOC split file {self._url(self._split_file)} lists no image ids; "
                "write one id per line (e.g. 2007_000032)"
            )
        return sorted(ids)

    def _collect(self) -> list[Sample]:
        ids = self._read_ids()
        images = list_files(self._fs, self._image_dir)
        labels = list_files(self._fs, self._label_dir) if self._has_labels else {}
        missing = [i for i in ids if f"{i}.jpg" not in images]
        if missing:
            expected = self._url(posixpath.join(self._image_dir, f"{missing[0]}.jpg"))
            raise DataError(
                f"VOC split {self.split!r} ({self._url(self._split_file)}) lists "
                f"{len(missing)} id(s) without an image, e.g. {missing[:MAX_LISTED]}: "
                f"expected {expected}; re-extract JPEGImages/ or fix the split file"
            )
        samples = []
        for i in ids:
            label = labels.get(f"{i}.png")
            samples.append(
                Sample(
                    name=i,
                    image_url=self._url(images[f"{i}.jpg"]),
                    label_url=self._url(label) if label is not None else None,
                )
            )
        return samples
