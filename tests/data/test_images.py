from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from segloop.data.classes import CAMVID
from segloop.data.fs import read_bytes
from segloop.data.ids import image_id
from segloop.data.images import (
    read_image,
    read_image_bytes,
    read_label,
    write_bytes_atomic,
    write_label_png,
)
from segloop.errors import DataError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
LABEL = RNG.integers(0, 11, (5, 7), dtype=np.uint8)


def test_image_id_is_stable_and_content_derived() -> None:
    assert image_id(b"abc") == "ba7816bf8f01cfea"
    assert image_id(b"abc") == hashlib.sha256(b"abc").hexdigest()[:16]
    assert image_id(b"abd") != image_id(b"abc")
    assert len(image_id(b"")) == 16


def test_read_image_rgb_and_bytes(tmp_path: Path, png, put_file) -> None:
    data = png(RGB)
    url = put_file(str(tmp_path / "a.png"), data)
    np.testing.assert_array_equal(read_image(url), RGB)
    arr, raw = read_image_bytes(url)
    assert raw == data and arr.dtype == np.uint8 and arr.shape == (5, 7, 3)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_read_image_other_modes_become_rgb(tmp_path: Path, png, put_file, mode: str) -> None:
    src = RGB if mode != "I;16" else RGB[..., 0]
    url = put_file(str(tmp_path / "a.png"), png(src, mode=mode))
    arr = read_image(url)
    assert arr.shape == (5, 7, 3) and arr.dtype == np.uint8


def test_read_image_jpeg_on_memory(memory_root: str, png, put_file) -> None:
    url = put_file(f"{memory_root}/a.jpg", png(RGB, fmt="JPEG"))
    assert read_image(url).shape == (5, 7, 3)


def test_missing_image(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"image file not found: .*nope\.png"):
        read_image(str(tmp_path / "nope.png"))


def test_unreadable_image(tmp_path: Path, put_file) -> None:
    url = put_file(str(tmp_path / "bad.png"), b"this is not an image")
    with pytest.raises(DataError, match=r"bad\.png is unreadable, corrupt or truncated"):
        read_image(url)


def test_truncated_image(tmp_path: Path, png, put_file) -> None:
    big = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = png(big)
    url = put_file(str(tmp_path / "cut.png"), data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.png is unreadable, corrupt or truncated"):
        read_image(url)
    lab = png(np.random.default_rng(2).integers(0, 11, (64, 64), dtype=np.uint8))
    url = put_file(str(tmp_path / "cutlabel.png"), lab[: len(lab) // 2])
    with pytest.raises(DataError, match=r"cutlabel\.png is unreadable"):
        read_label(url, CAMVID, None)


def test_image_folder_url(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a folder"):
        read_image(str(tmp_path))


@pytest.mark.parametrize("mode", ["L", "P", "I;16", "I"])
def test_read_label_single_channel_modes(tmp_path: Path, png, put_file, mode: str) -> None:
    src = LABEL if mode in ("L", "P") else LABEL.astype(np.uint16 if mode == "I;16" else np.int32)
    fmt = "TIFF" if mode == "I" else "PNG"  # PNG has no 32-bit integer mode
    url = put_file(str(tmp_path / "l.img"), png(src, mode=mode if mode == "P" else None, fmt=fmt))
    out = read_label(url, CAMVID, expected_hw=(5, 7))
    assert out.dtype == np.uint8 and out.shape == (5, 7)
    np.testing.assert_array_equal(out, LABEL)


def test_read_label_bilevel(tmp_path: Path, png, put_file) -> None:
    url = put_file(str(tmp_path / "l.png"), png((LABEL > 5).astype(np.uint8) * 255, mode="1"))
    np.testing.assert_array_equal(read_label(url, CAMVID, None), (LABEL > 5).astype(np.uint8))


def test_rgb_label_rejected(tmp_path: Path, png, put_file) -> None:
    url = put_file(str(tmp_path / "rgb.png"), png(RGB))
    with pytest.raises(DataError) as info:
        read_label(url, CAMVID, None)
    msg = str(info.value)
    assert "rgb.png" in msg and "mode RGB" in msg
    assert "convert it to a single-channel id map" in msg


def test_jpeg_label_rejected(tmp_path: Path, png, put_file) -> None:
    url = put_file(str(tmp_path / "l.jpg"), png(LABEL, fmt="JPEG"))
    with pytest.raises(DataError, match=r"l\.jpg is a JPEG file.*single-channel PNG"):
        read_label(url, CAMVID, None)


def test_16bit_label_over_255_rejected(tmp_path: Path, png, put_file) -> None:
    big = LABEL.astype(np.uint16)
    big[0, 0] = 300
    url = put_file(str(tmp_path / "l16.png"), png(big))
    with pytest.raises(DataError, match=r"l16\.png holds values 0\.\.300"):
        read_label(url, CAMVID, None)


def test_label_size_mismatch_names_both_files(tmp_path: Path, png, put_file) -> None:
    url = put_file(str(tmp_path / "lab.png"), png(LABEL))
    with pytest.raises(DataError) as info:
        read_label(url, CAMVID, expected_hw=(6, 7), image_url="img.png")
    msg = str(info.value)
    assert "lab.png is 5x7" in msg and "img.png is 6x7" in msg


def test_label_ids_outside_spec(tmp_path: Path, png, put_file) -> None:
    bad = LABEL.copy()
    bad[1, 1] = 42
    url = put_file(str(tmp_path / "ids.png"), png(bad))
    with pytest.raises(DataError, match=r"ids\.png: label ids 42 are not in the class spec"):
        read_label(url, CAMVID, None)


def test_missing_label(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"label file not found: .*gone\.png"):
        read_label(str(tmp_path / "gone.png"), CAMVID, None)


@pytest.mark.parametrize("where", ["local", "file", "memory"])
def test_write_label_png_roundtrip(tmp_path: Path, memory_root: str, where: str) -> None:
    base = {"local": str(tmp_path), "file": f"file://{tmp_path}", "memory": memory_root}[where]
    url = f"{base}/deep/dir/out.png"
    write_label_png(url, LABEL)
    np.testing.assert_array_equal(read_label(url, CAMVID, (5, 7)), LABEL)
    write_label_png(url, np.zeros((5, 7), np.int64))  # overwrite, int ids accepted
    assert read_label(url, CAMVID, None).max() == 0


def test_write_bytes_atomic_leaves_no_temp(tmp_path: Path) -> None:
    url = str(tmp_path / "x.bin")
    write_bytes_atomic(url, b"one")
    write_bytes_atomic(url, b"two")
    assert read_bytes(url) == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_write_bytes_atomic_error_cleans_up(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "inner").write_text("x")
    with pytest.raises(DataError, match=r"cannot write .*taken: a folder has that name"):
        write_bytes_atomic(str(tmp_path / "taken"), b"data")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["inner"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.parametrize(
    ("label", "needle"),
    [
        (np.zeros((2, 2, 3), np.uint8), "must be (H, W)"),
        (np.full((2, 2), 300), "must hold uint8 class ids"),
        (np.zeros((2, 2), np.float32), "float32"),
    ],
)
def test_write_label_png_rejects(tmp_path: Path, label: np.ndarray, needle: str) -> None:
    with pytest.raises(DataError) as info:
        write_label_png(str(tmp_path / "l.png"), label)
    assert needle in str(info.value) and "l.png" in str(info.value)
    assert not list(tmp_path.iterdir())


def test_write_bytes_atomic_failed_rename_cleans_up(tmp_path: Path, monkeypatch) -> None:
    from fsspec.implementations.local import LocalFileSystem

    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(LocalFileSystem, "mv", boom)
    with pytest.raises(DataError, match=r"cannot write .*x\.bin: disk full"):
        write_bytes_atomic(str(tmp_path / "x.bin"), b"data")
    assert not list(tmp_path.iterdir())
