from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segloop.config import parse_config
from segloop.data.classes import BUILTIN_CLASSES, CAMVID, VOC, resolve_classes
from segloop.data.datasets import FORMATS, open_dataset
from segloop.data.fs import join
from segloop.data.voc import VOC_DOWNLOAD_URL, VOCLayout
from segloop.errors import ConfigError, DataError
from segloop.testing import png_bytes, put

HW = (24, 32)
VOC_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def voc_colormap() -> np.ndarray:
    """The standard VOC colormap (256, 3), built bit by bit as in the VOC devkit."""
    cmap = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def palette_png(indices: np.ndarray) -> bytes:
    """A mode 'P' PNG whose pixel indices are ``indices``, with the VOC palette."""
    img = Image.fromarray(indices.astype(np.uint8))  # mode L; putpalette turns it into P
    img.putpalette(voc_colormap().ravel().tolist())
    assert img.mode == "P"
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def voc_label(class_id: int, hw: tuple[int, int] = HW) -> np.ndarray:
    """Background with one object of ``class_id`` and its 255 void border."""
    h, w = hw
    label = np.zeros(hw, dtype=np.uint8)
    label[4 : h - 4, 6 : w - 6] = 255
    label[6 : h - 6, 8 : w - 8] = class_id
    return label


IDS = {"train": ["2007_000032", "2007_000039"], "val": ["2008_000002", "2007_000121"]}
CLASS_OF = {"2007_000032": 1, "2007_000039": 15, "2008_000002": 20, "2007_000121": 7}


def make_voc(root: str, unlabelled: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Write a tiny VOC2012 tree at ``root`` (a path or URL); returns the labels by id."""
    rng = np.random.default_rng(0)
    labels = {}
    for split, ids in IDS.items():
        # Out of order and with a blank line: listing must sort and skip blanks.
        put(join(root, "ImageSets", "Segmentation", f"{split}.txt"),
            ("\n".join(reversed(ids)) + "\n\n").encode())
    for i, class_id in CLASS_OF.items():
        image = rng.integers(0, 256, (*HW, 3), dtype=np.uint8)
        put(join(root, "JPEGImages", f"{i}.jpg"), png_bytes(image, fmt="JPEG"))
        if i in unlabelled:
            continue
        labels[i] = voc_label(class_id)
        put(join(root, "SegmentationClass", f"{i}.png"), palette_png(labels[i]))
    return labels


def test_voc_reads_palette_indices_as_class_ids(tmp_path: Path) -> None:
    root = str(tmp_path / "VOC2012")
    labels = make_voc(root)
    ds = VOCLayout(root, "val", VOC)
    samples = list(ds.samples())
    assert [s.name for s in samples] == ["2007_000121", "2008_000002"]
    assert len(ds) == 2
    assert samples[0].image_url == f"{root}/JPEGImages/2007_000121.jpg"
    assert samples[0].label_url == f"{root}/SegmentationClass/2007_000121.png"
    with Image.open(samples[0].label_url) as img:
        assert img.mode == "P"  # really a palette PNG, like VOC's
    for item in ds:
        assert item.image.shape == (*HW, 3) and item.image.dtype == np.uint8
        assert item.label is not None and item.label.dtype == np.uint8
        np.testing.assert_array_equal(item.label, labels[item.sample.name])
        assert set(np.unique(item.label)) == {0, CLASS_OF[item.sample.name], 255}
    assert [s.name for s in VOCLayout(root, "train", VOC).samples()] == IDS["train"]


@pytest.mark.parametrize("above", ["", "VOCdevkit", "download"])
def test_both_root_forms(tmp_path: Path, above: str) -> None:
    voc_dir = tmp_path / "download" / "VOCdevkit" / "VOC2012"
    make_voc(str(voc_dir))
    root = tmp_path / "download" / "VOCdevkit" if above == "VOCdevkit" else (
        tmp_path / "download" if above else voc_dir)
    ds = VOCLayout(str(root), "train", VOC)
    assert ds.voc_dir == str(voc_dir)
    assert [s.name for s in ds.samples()] == IDS["train"]
    assert all(s.image_url.startswith(f"{voc_dir}/JPEGImages/") for s in ds.samples())


def test_memory_url(memory_root: str) -> None:
    labels = make_voc(f"{memory_root}/VOCdevkit/VOC2012")
    ds = VOCLayout(memory_root, "train", VOC)
    item = ds.load(next(ds.samples()))
    assert item.sample.image_url.startswith("memory://")
    np.testing.assert_array_equal(item.label, labels[item.sample.name])


def test_unknown_split_lists_available(tmp_path: Path) -> None:
    make_voc(str(tmp_path))
    (tmp_path / "ImageSets" / "Segmentation" / "trainval.txt").write_text("2007_000032\n")
    with pytest.raises(DataError) as info:
        VOCLayout(str(tmp_path), "tran", VOC)
    msg = str(info.value)
    assert "'tran' not found" in msg and "tran.txt" in msg
    assert "['train', 'trainval', 'val']" in msg and "data.split" in msg


def test_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(DataError) as info:
        VOCLayout(str(tmp_path), "train", VOC)
    msg = str(info.value)
    assert "no PASCAL VOC 2012 folder found" in msg
    assert "ImageSets/Segmentation/" in msg and "VOCdevkit/VOC2012" in msg
    assert VOC_DOWNLOAD_URL in msg and "data.root" in msg
    with pytest.raises(DataError, match="does not exist"):
        VOCLayout(str(tmp_path / "nowhere"), "train", VOC)


def test_missing_label_folder_only_allowed_for_test(tmp_path: Path) -> None:
    make_voc(str(tmp_path))
    for p in (tmp_path / "SegmentationClass").iterdir():
        p.unlink()
    (tmp_path / "SegmentationClass").rmdir()
    with pytest.raises(DataError, match=r"label folder .*SegmentationClass is missing"):
        VOCLayout(str(tmp_path), "train", VOC)
    (tmp_path / "ImageSets" / "Segmentation" / "test.txt").write_text("2007_000032\n")
    ds = VOCLayout(str(tmp_path), "test", VOC)
    (item,) = list(ds)
    assert item.sample.label_url is None and item.label is None


def test_id_without_label_file_is_unlabelled(tmp_path: Path) -> None:
    make_voc(str(tmp_path), unlabelled=("2008_000002",))
    samples = {s.name: s for s in VOCLayout(str(tmp_path), "val", VOC).samples()}
    assert samples["2008_000002"].label_url is None
    assert samples["2007_000121"].label_url is not None


def test_id_without_image(tmp_path: Path) -> None:
    make_voc(str(tmp_path))
    (tmp_path / "JPEGImages" / "2007_000039.jpg").unlink()
    ds = VOCLayout(str(tmp_path), "train", VOC)
    with pytest.raises(DataError, match=r"without an image.*2007_000039\.jpg"):
        list(ds.samples())


def test_empty_split_file(tmp_path: Path) -> None:
    make_voc(str(tmp_path))
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    with pytest.raises(DataError, match="lists no image ids"):
        list(VOCLayout(str(tmp_path), "val", VOC).samples())


def test_out_of_range_id_is_rejected(tmp_path: Path) -> None:
    make_voc(str(tmp_path))
    bad = voc_label(21)
    (tmp_path / "SegmentationClass" / "2007_000032.png").write_bytes(palette_png(bad))
    ds = VOCLayout(str(tmp_path), "train", VOC)
    with pytest.raises(DataError) as info:
        ds.load(next(ds.samples()))
    msg = str(info.value)
    assert "2007_000032.png" in msg and "label ids 21 are not in the class spec" in msg
    assert "0..20" in msg and "ignore id 255" in msg


def test_auto_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"'auto'.*{VOC_DOWNLOAD_URL}"):
        VOCLayout("auto", "val", VOC)
    from segloop.context import resolve_data_root

    with pytest.raises(ConfigError, match=rf"data\.root.*{VOC_DOWNLOAD_URL}"):
        resolve_data_root(parse_config({"data": {"format": "voc", "classes": "voc"}}))
    cfg = parse_config({"data": {"format": "voc", "root": str(tmp_path), "classes": "voc"}})
    assert resolve_data_root(cfg) == str(tmp_path)


def test_open_dataset_voc(tmp_path: Path) -> None:
    make_voc(str(tmp_path / "VOCdevkit" / "VOC2012"))
    assert "voc" in FORMATS
    ds = open_dataset("VOC", str(tmp_path), "val", VOC)
    assert isinstance(ds, VOCLayout)
    assert [s.name for s in ds.samples()] == sorted(IDS["val"])


def test_voc_class_spec() -> None:
    spec = resolve_classes("voc")
    assert spec is VOC is BUILTIN_CLASSES["voc"]
    assert spec.num_classes == 21 and spec.ignore_index == 255
    assert spec.names == VOC_NAMES
    assert spec.by_id[0].name == "background"
    cmap = voc_colormap()
    np.testing.assert_array_equal(spec.colors[:21], cmap[:21])
    assert CAMVID.num_classes == 11  # the other built-in is untouched


def test_config_with_voc() -> None:
    cfg = parse_config(
        {"data": {"format": "voc", "root": "/data/VOC2012", "split": "val", "classes": "voc"}}
    )
    assert cfg.data.format == "voc" and cfg.data.split == "val"
    assert cfg.data.classes == VOC
