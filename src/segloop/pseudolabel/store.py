"""Pseudo-label rounds on disk: a resumable staging folder, then a versioned round folder.

A run works in a staging folder (``<workspace>/work/pseudolabels/<method>/``, git-ignored)::

    settings.json               what the staged files were made with (other settings: wiped)
    model/teacher.safetensors   U-SAM heads with their config in the file metadata
    model/student.safetensors
    model/training.json         losses per epoch, tau and the values used
    labels/<image_id>.png       (H, W) uint8 target class ids, 255 where the method abstains
    scores/<image_id>.npz       "scores": (C, h, w) float16 in [0, 1], each label's soft map
                                (C in the round's label order, any h, w: resize to the image)
    parts/part-NNNNN.parquet    table pseudolabel_masks of one chunk: the chunk's commit point

A rerun reuses the heads and skips committed chunks. The round folder
(``data/pseudolabels/<method>/round_NNN/``) receives a copy of ``model/`` and ``labels/``,
the parts compacted into ``masks.parquet``, ``round.json`` (method, settings, tau,
class mapping, inputs, counts; ``"pseudo": true``), and when evaluated ``metrics.json`` and
``side_by_side.png``. It is then versioned like a label round.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from segloop.data import json_io, temp_files
from segloop.data.images import write_bytes_atomic, write_label_png
from segloop.data.parquet import read_table, write_table
from segloop.data.schemas import PSEUDOLABEL_MASKS, get_schema
from segloop.errors import DataError

SETTINGS = "settings.json"
MODEL_DIR = "model"
LABELS_DIR = "labels"
SCORES_DIR = "scores"
#: Longest side of stored score maps (larger maps are area-averaged down to it).
SCORES_MAX_SIDE = 128
PARTS_DIR = "parts"
MASKS_FILE = "masks.parquet"
ROUND_FILE = "round.json"
METRICS_FILE = "metrics.json"
FIGURE_FILE = "side_by_side.png"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (sorted keys; numpy values allowed)."""
    json_io.write_json(path, data, sort_keys=True)


def open_staging(staging: Path, fingerprint: str, settings: dict[str, Any]) -> bool:
    """Make ``staging`` hold work of ``fingerprint`` only; True if earlier work is reused."""
    marker = staging / SETTINGS
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text()).get("fingerprint")
        except json.JSONDecodeError:
            recorded = None
        if recorded == fingerprint:
            _sweep(staging)
            return True
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    write_json(marker, {"fingerprint": fingerprint, "settings": settings})
    return False


def _sweep(staging: Path) -> None:
    temp_files.sweep(staging)


def part_path(staging: Path, chunk: int) -> Path:
    return staging / PARTS_DIR / f"part-{chunk:05d}.parquet"


def chunk_done(staging: Path, chunk: int) -> bool:
    return part_path(staging, chunk).is_file()


def write_chunk(staging: Path, chunk: int, labels: dict[str, np.ndarray],
                rows: list[dict[str, Any]],
                scores: dict[str, np.ndarray] | None = None) -> None:
    """Commit one chunk: its label PNGs and score maps (each atomic), then its rows (the
    commit point)."""
    for image_id, label in labels.items():
        write_label_png(str(staging / LABELS_DIR / f"{image_id}.png"), label)
    for image_id, soft in (scores or {}).items():
        write_scores(staging, image_id, soft)
    schema = get_schema(PSEUDOLABEL_MASKS)
    table = pa.Table.from_pylist(rows, schema=schema.schema) if rows else \
        schema.arrow.empty_table()
    path = part_path(staging, chunk)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(str(path), PSEUDOLABEL_MASKS, table)


def read_masks(folder: Path) -> pa.Table:
    """The ``pseudolabel_masks`` rows of a staging folder (its parts) or a round folder."""
    whole = folder / MASKS_FILE
    if whole.is_file():
        return read_table(str(whole), PSEUDOLABEL_MASKS)
    parts = folder / PARTS_DIR
    if not parts.is_dir():
        return get_schema(PSEUDOLABEL_MASKS).arrow.empty_table()
    return read_table(str(parts), PSEUDOLABEL_MASKS)


def read_label(folder: Path, image_id: str) -> np.ndarray:
    """The (H, W) uint8 label map of ``image_id`` in a staging or round folder."""
    path = folder / LABELS_DIR / f"{image_id}.png"
    if not path.is_file():
        raise DataError(f"{path} is missing: {folder} has no pseudo-label for image "
                        f"{image_id}")
    return np.asarray(Image.open(path))


def compact_scores(scores: np.ndarray, max_side: int = SCORES_MAX_SIDE) -> np.ndarray:
    """(C, H, W) float scores in [0, 1] -> (C, h, w) float16 with max(h, w) <= ``max_side``
    (area-averaged by an integer factor; the aspect ratio is kept)."""
    arr = np.asarray(scores, np.float32)
    if arr.ndim != 3:
        raise DataError(f"scores must be (C, H, W), got shape {arr.shape}")
    c, h, w = arr.shape
    f = max(1, -(-max(h, w) // max_side))
    if f > 1:
        hp, wp = -(-h // f) * f, -(-w // f) * f
        padded = np.pad(arr, ((0, 0), (0, hp - h), (0, wp - w)), mode="edge")
        arr = padded.reshape(c, hp // f, f, wp // f, f).mean((2, 4))
    return np.clip(arr, 0.0, 1.0).astype(np.float16)


def write_scores(folder: Path, image_id: str, scores: np.ndarray) -> None:
    """Write ``scores/<image_id>.npz`` (compacted by :func:`compact_scores`), atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, scores=compact_scores(scores))
    write_bytes_atomic(str(folder / SCORES_DIR / f"{image_id}.npz"), buf.getvalue())


def read_scores(folder: Path, image_id: str) -> np.ndarray:
    """The (C, h, w) float32 score maps of ``image_id`` in a staging or round folder."""
    path = folder / SCORES_DIR / f"{image_id}.npz"
    if not path.is_file():
        raise DataError(f"{path} is missing: {folder} has no score maps for image "
                        f"{image_id} (rounds made before score maps were stored have none: "
                        "make the round again)")
    try:
        with np.load(path) as data:
            arr = np.asarray(data["scores"], np.float32)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise DataError(f"{path} is not a score file ({err}); make the round again") from None
    if arr.ndim != 3:
        raise DataError(f"{path}: scores must be (C, h, w), got shape {arr.shape}")
    return arr


def fill_round(folder: Path, staging: Path, masks: pa.Table, meta: dict[str, Any],
               metrics: dict[str, Any] | None) -> None:
    """Fill a (temporary) round folder from ``staging``, its ``masks`` rows (as read by
    :func:`read_masks`), metadata and metrics."""
    shutil.copytree(staging / LABELS_DIR, folder / LABELS_DIR)
    if (staging / SCORES_DIR).is_dir():
        shutil.copytree(staging / SCORES_DIR, folder / SCORES_DIR)
    if (staging / MODEL_DIR).is_dir():
        shutil.copytree(staging / MODEL_DIR, folder / MODEL_DIR)
    table = masks.sort_by([("image_id", "ascending"), ("point_index", "ascending")])
    write_table(str(folder / MASKS_FILE), PSEUDOLABEL_MASKS, table)
    if (staging / FIGURE_FILE).is_file():
        shutil.copyfile(staging / FIGURE_FILE, folder / FIGURE_FILE)
    if metrics is not None:
        write_json(folder / METRICS_FILE, metrics)
    write_json(folder / ROUND_FILE, {**meta, "pseudo": True})


def read_round_meta(folder: Path) -> dict[str, Any]:
    """``round.json`` of a pseudo-label round folder (clear error if it is not one)."""
    path = folder / ROUND_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing: {folder} is not a pseudo-label round written by "
                        "the pseudolabel flow (data/pseudolabels/<method>/round_NNN)")
    meta = json_io.read_json(path, "restore the round with `segloop rounds checkout` (or "
                             "`dvc checkout` in the workspace)")
    if not meta.get("pseudo"):
        raise DataError(f"{path} does not describe pseudo-labels (no \"pseudo\": true)")
    return meta
