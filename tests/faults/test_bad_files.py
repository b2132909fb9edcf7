"""Every kind of file segloop reads back, truncated, corrupted or hostile: a SegloopError that
names the file, and the file (and everything beside it) left as it was.

Each case writes one bad file into a fresh folder, calls the reader that meets it in a run,
and checks the error and that no file in the folder changed. ``test_bad_json.py`` covers
the JSON state files; this module the images, tables, checkpoints, label exports and
configs; ``benchmarks/reliability.py`` counts both."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segloop.data.classes import CAMVID
from segloop.errors import SegloopError

H, W = 6, 8


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


GOOD_LABEL = _png(np.zeros((H, W), np.uint8))
GOOD_IMAGE = _png(np.zeros((H, W, 3), np.uint8))


def _parquet_bytes() -> bytes:
    import tempfile

    from segloop.data.parquet import write_table
    from segloop.data.schemas import MANIFEST

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.parquet"
        write_table(str(path), MANIFEST, [{
            "image_id": "0" * 16, "name": "a.png", "split": "train", "source": "real",
            "image_uri": "a.png", "label_uri": None, "height": H, "width": W, "n_bytes": 1}])
        return path.read_bytes()


GOOD_PARQUET = _parquet_bytes()


def _read_label(path: Path) -> Any:
    from segloop.data.images import read_label

    return read_label(str(path), CAMVID, (H, W))


def _read_image(path: Path) -> Any:
    from segloop.data.images import read_image

    return read_image(str(path))


def _read_parquet(path: Path) -> Any:
    from segloop.data.parquet import read_table
    from segloop.data.schemas import MANIFEST

    return read_table(str(path), MANIFEST)


def _read_manifest(path: Path) -> Any:
    from segloop.data.manifest_dataset import ManifestDataset

    return list(ManifestDataset(str(path)).samples())


def _load_checkpoint(path: Path) -> Any:
    import torch

    from segloop.train.checkpoint import load_checkpoint

    return load_checkpoint(torch.nn.Linear(2, 2), path)


def _load_config(path: Path) -> Any:
    from segloop.config import load_config

    return load_config(path)


def _read_selection(path: Path) -> Any:
    from segloop.labeling import read_selection

    return read_selection(path)


def _bomb() -> bytes:
    """A PNG header claiming 30000 x 30000 pixels (decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


#: kind -> (file name, bad bytes, reader)
CASES: dict[str, tuple[str, bytes, Callable[[Path], Any]]] = {
    "label png truncated": ("l.png", GOOD_LABEL[: len(GOOD_LABEL) // 2], _read_label),
    "label png empty": ("l.png", b"", _read_label),
    "label png is text": ("l.png", b"not an image at all", _read_label),
    "label png is rgb": ("l.png", GOOD_IMAGE, _read_label),
    "label png wrong size": ("l.png", _png(np.zeros((H + 1, W), np.uint8)), _read_label),
    "label png unknown class id": ("l.png", _png(np.full((H, W), 200, np.uint8)),
                                   _read_label),
    "label png decompression bomb": ("l.png", _bomb(), _read_label),
    "label is a jpeg": ("l.png", b"\xff\xd8\xff\xe0" + b"\x00" * 40, _read_label),
    "image png truncated": ("i.png", GOOD_IMAGE[: len(GOOD_IMAGE) // 2], _read_image),
    "image empty": ("i.png", b"", _read_image),
    "image random bytes": ("i.png", bytes(range(256)) * 4, _read_image),
    "image decompression bomb": ("i.png", _bomb(), _read_image),
    "parquet truncated": ("m.parquet", GOOD_PARQUET[: len(GOOD_PARQUET) // 2],
                          _read_parquet),
    "parquet empty": ("m.parquet", b"", _read_parquet),
    "parquet footer only": ("m.parquet", GOOD_PARQUET[-200:], _read_parquet),
    "parquet is json": ("m.parquet", b'{"a": 1}', _read_parquet),
    "manifest truncated": ("manifest.parquet", GOOD_PARQUET[:100], _read_manifest),
    "manifest random bytes": ("manifest.parquet", bytes(range(256)), _read_manifest),
    "checkpoint truncated": ("c.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a",
                             _load_checkpoint),
    "checkpoint empty": ("c.safetensors", b"", _load_checkpoint),
    "checkpoint huge header length": ("c.safetensors", b"\xff" * 8 + b"{}",
                                      _load_checkpoint),
    "config invalid yaml": ("p.yaml", b"base: [unclosed\n", _load_config),
    "config not a mapping": ("p.yaml", b"- a\n- b\n", _load_config),
    "config unknown key": ("p.yaml", b"base:\n  sed: 1\n", _load_config),
    "config wrong type": ("p.yaml", b"active:\n  rounds: many\n", _load_config),
    "config binary": ("p.yaml", b"\x00\xff\xfe", _load_config),
    "config yaml alias bomb": ("p.yaml", b"a: &a [1,2]\nb: &b [*a,*a,*a,*a,*a,*a]\n"
                               b"c: &c [*b,*b,*b,*b,*b,*b]\nbase: *c\n", _load_config),
    "selection truncated": ("selection.json", b'{"format": "segloop-selection", "ro',
                            _read_selection),
    "selection wrong shape": ("selection.json", b"[1, 2]", _read_selection),
    "selection missing keys": ("selection.json", b'{"format": "segloop-selection"}',
                               _read_selection),
}


def _state(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_bad_file_gives_a_clear_error_and_changes_nothing(tmp_path: Path, kind: str) -> None:
    name, data, read = CASES[kind]
    path = tmp_path / name
    path.write_bytes(data)
    (tmp_path / "keep.txt").write_text("untouched")
    before = _state(tmp_path)
    with pytest.raises(SegloopError) as info:
        read(path)
    assert path.name in str(info.value), str(info.value)
    assert _state(tmp_path) == before


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 255), max_size=64))
def test_any_brush_rle_bytes_decode_or_fail_clearly(data: list[int]) -> None:
    from segloop.labeling import rle_to_mask

    try:
        mask = rle_to_mask(data, 4, 5)
    except SegloopError as err:
        assert "brush RLE" in str(err)
    else:
        assert mask.shape == (4, 5) and mask.dtype == bool


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(
                        st.sampled_from(["images", "annotations", "categories", "data", "id",
                                         "segmentation", "image_id", "result", "info"]),
                        c, max_size=4), max_leaves=12))
def test_any_json_label_export_is_imported_or_refused_clearly(tmp_path_factory, doc) -> None:
    from segloop.data.classes import ClassSpec
    from segloop.labeling import PendingSelection, TaskUnit, import_labels

    folder = tmp_path_factory.mktemp("export")
    path = folder / "export.json"
    path.write_text(json.dumps(doc))
    before = path.read_bytes()
    spec = ClassSpec(classes=["road", "car"], ignore_index=255)
    sel = PendingSelection(round=0, strategy="random", level="image", classes=spec.names,
                           ignore_index=255, units=(TaskUnit("a" * 16, "a.png", "pool/a.png",
                                                             -1, 4, 5, None),),
                           created_at="2026-01-01T00:00:00+00:00")
    with pytest.raises(SegloopError):
        import_labels(path, sel, spec)
    assert path.read_bytes() == before
