"""Reading images and label maps, and writing files atomically, over fsspec URLs.

Images come back as (H, W, 3) uint8 RGB; label maps as (H, W) uint8 class ids. Every
decode calls ``Image.load()`` so corrupt and truncated files fail here, with the file's
name, instead of deep inside training.
"""

from __future__ import annotations

import io
import posixpath
from typing import Any

import numpy as np
from PIL import Image

from segloop.data import temp_files
from segloop.data.classes import ClassSpec
from segloop.data.fs import url_to_fs
from segloop.errors import DISK_FULL_ERRNOS, DataError, disk_full_error

_LABEL_MODES = ("L", "P", "1", "I", "I;16", "I;16L", "I;16B", "I;16N")
_LOSSY_FORMATS = ("JPEG", "MPO")


def read_image(url: str, storage_options: dict[str, Any] | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (alpha dropped, grey expanded)."""
    return read_image_bytes(url, storage_options)[0]


def read_image_bytes(
    url: str, storage_options: dict[str, Any] | None = None
) -> tuple[np.ndarray, bytes]:
    """Read an image as (H, W, 3) uint8 RGB plus the file's raw bytes (for hashing)."""
    data = _read(url, storage_options, what="image")
    img = _decode(data, url, what="image")
    try:
        rgb = img.convert("RGB")
    except (OSError, ValueError) as err:
        raise DataError(
            f"image {url}: cannot convert mode {img.mode} to RGB ({err}); save it as an "
            "8-bit RGB or greyscale PNG/JPEG"
        ) from err
    return np.asarray(rgb, dtype=np.uint8).copy(), data


def read_label(
    url: str,
    classes: ClassSpec,
    expected_hw: tuple[int, int] | None,
    image_url: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> np.ndarray:
    """Read a single-channel label map as (H, W) uint8 class ids and validate it.

    Accepted modes: ``L``, ``P`` (palette indices are the ids), ``1`` and 16/32-bit
    integer modes whose values are all < 256. ``expected_hw`` (H, W) is the size of the
    image the label belongs to (``image_url``, named in messages); None skips the check.
    """
    data = _read(url, storage_options, what="label")
    img = _decode(data, url, what="label")
    if img.format in _LOSSY_FORMATS:
        raise DataError(
            f"label {url} is a {img.format} file; lossy compression changes class ids at "
            "edges, save labels as single-channel PNG"
        )
    if img.mode not in _LABEL_MODES:
        hint = (
            "convert it to a single-channel id map (one uint8 class id per pixel, e.g. "
            "map each class colour to its id) and save it as PNG"
        )
        raise DataError(
            f"label {url} has mode {img.mode} ({len(img.getbands())} channels) but a label "
            f"must be a single-channel PNG of class ids; {hint}"
        )
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DataError(
                f"label {url} holds values {int(arr.min())}..{int(arr.max())} but class ids "
                "must fit in 0..255; save the label as an 8-bit single-channel PNG"
            )
        arr = arr.astype(np.uint8)
    if expected_hw is not None and tuple(arr.shape) != tuple(expected_hw):
        h, w = arr.shape
        eh, ew = expected_hw
        raise DataError(
            f"label {url} is {h}x{w} (HxW) but its image {image_url or '(unknown)'} is "
            f"{eh}x{ew}; labels must have the image's size: fix the pairing or resize the "
            "label with nearest-neighbour"
        )
    classes.check_label(arr, where=f"label {url}")
    return np.ascontiguousarray(arr)


def write_label_png(
    url: str, label: np.ndarray, storage_options: dict[str, Any] | None = None
) -> None:
    """Write a (H, W) uint8 label map as a single-channel (mode L) PNG, atomically."""
    arr = np.asarray(label)
    if arr.ndim != 2:
        raise DataError(f"label for {url} must be (H, W), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.integer) or (
            arr.size and (arr.min() < 0 or arr.max() > 255)
        ):
            raise DataError(
                f"label for {url} must hold uint8 class ids, got dtype {arr.dtype}; "
                "pass label.astype(np.uint8) with ids in 0..255"
            )
        arr = arr.astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    write_bytes_atomic(url, buf.getvalue(), storage_options)


def write_bytes_atomic(
    url: str, data: bytes, storage_options: dict[str, Any] | None = None
) -> None:
    """Write ``data`` to a temporary name in the same folder, then rename it to ``url``.

    Readers never see a half-written file (the rename is atomic on local disks; object
    stores have no partial objects anyway). Parent folders are created.
    """
    fs, path = url_to_fs(url, **(storage_options or {}))
    parent, name = posixpath.split(path.rstrip("/"))
    if not name:
        raise DataError(f"cannot write to {url}: it names a folder, not a file")
    if fs.isdir(path):
        raise DataError(
            f"cannot write {url}: a folder has that name; remove it or pick a file name"
        )
    tmp = posixpath.join(parent, temp_files.temp_name(name))
    try:
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
    except BaseException as err:
        _remove_quietly(fs, tmp)
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(url, err) from err
        if isinstance(err, OSError):
            raise DataError(
                f"cannot write {url}: {err}; check the folder exists and is writable"
            ) from err
        raise


def _read(url: str, storage_options: dict[str, Any] | None, what: str) -> bytes:
    try:
        fs, path = url_to_fs(url, **(storage_options or {}))
        with fs.open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError as err:
        raise DataError(f"{what} file not found: {url}; check the path and the data root") from err
    except IsADirectoryError as err:
        raise DataError(f"{what} {url} is a folder, not a file; point at an image file") from err
    except OSError as err:
        raise DataError(f"cannot read {what} {url}: {err}; check the path and permissions") from err


def _decode(data: bytes, url: str, what: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Image.DecompressionBombError as err:
        raise DataError(
            f"{what} {url} is too large to decode safely ({err}); downscale it"
        ) from err
    except (OSError, ValueError, SyntaxError, EOFError, TypeError) as err:
        # UnidentifiedImageError is an OSError; truncation raises OSError on load().
        raise DataError(
            f"{what} {url} is unreadable, corrupt or truncated ({type(err).__name__}: {err}); "
            "re-export or re-download the file, or remove it from the folder"
        ) from err
    return img


def _remove_quietly(fs: Any, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path)
    except Exception:  # cleanup must not hide the original error
        pass
