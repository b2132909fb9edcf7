from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from segloop.data.base import IMAGE_EXTENSIONS, LoadedSample, Sample, is_image_name
from segloop.data.classes import CAMVID
from segloop.data.datasets import CamVidLayout, ImageFolder, open_dataset
from segloop.data.fs import read_bytes
from segloop.data.ids import image_id
from segloop.errors import DataError


@pytest.fixture(params=["local", "file", "memory"])
def any_root(request: pytest.FixtureRequest, tmp_path: Path, memory_root: str) -> str:
    return {
        "local": str(tmp_path / "camvid"),
        "file": f"file://{tmp_path}/camvid",
        "memory": memory_root,
    }[request.param]


def test_camvid_layout_reads_every_url_kind(any_root: str, make_camvid_tree) -> None:
    names = make_camvid_tree(any_root, {"train": 3, "val": 2}, hw=(6, 8))
    ds = CamVidLayout(any_root, "train", CAMVID)
    samples = list(ds.samples())
    assert [s.name for s in samples] == names["train"] == sorted(names["train"])
    assert len(ds) == 3
    assert all(s.image_url.endswith(f"/train/{s.name}") for s in samples)
    assert all(s.label_url and s.label_url.endswith(f"/trainannot/{s.name}") for s in samples)
    loaded = list(ds)
    assert all(isinstance(x, LoadedSample) for x in loaded)
    for item in loaded:
        assert item.image.shape == (6, 8, 3) and item.image.dtype == np.uint8
        assert item.label is not None
        assert item.label.shape == (6, 8) and item.label.dtype == np.uint8
        assert item.label[0, 0] == CAMVID.ignore_index
        assert item.image_id == image_id(read_bytes(item.sample.image_url))
    assert len({x.image_id for x in loaded}) == 3
    assert len(CamVidLayout(any_root, "val", CAMVID)) == 2


def test_image_id_is_stable_across_url_kinds(tmp_path: Path, make_camvid_tree) -> None:
    make_camvid_tree(str(tmp_path), {"train": 2})
    a = [x.image_id for x in CamVidLayout(str(tmp_path), "train", CAMVID)]
    b = [x.image_id for x in CamVidLayout(f"file://{tmp_path}", "train", CAMVID)]
    assert a == b


def test_image_extensions() -> None:
    assert {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"} == set(IMAGE_EXTENSIONS)
    assert is_image_name("A.JPG") and is_image_name("x/y.TiFf")
    assert not is_image_name(".hidden.png") and not is_image_name("notes.txt")


def test_non_images_are_ignored_and_jpg_pairs_png(
    tmp_path: Path, png, put_file, make_camvid_tree
) -> None:
    root = str(tmp_path)
    make_camvid_tree(root, {"train": 1})
    rgb = np.zeros((6, 8, 3), np.uint8)
    put_file(f"{root}/train/extra.JPG", png(rgb, fmt="JPEG"))
    put_file(f"{root}/trainannot/extra.png", png(np.ones((6, 8), np.uint8)))
    put_file(f"{root}/train/README.txt", b"hi")
    put_file(f"{root}/train/.DS_Store", b"junk")
    samples = list(CamVidLayout(root, "train", CAMVID).samples())
    assert [s.name for s in samples] == ["extra.JPG", "train_000.png"]
    assert samples[0].label_url == f"{tmp_path}/trainannot/extra.png"


def test_shared_camvid_slice(shared_camvid: Path) -> None:
    for split, count in (("train", 367), ("val", 101)):
        ds = CamVidLayout(str(shared_camvid), split, CAMVID)
        samples = list(ds.samples())
        assert len(samples) == count
        for sample in islice(samples, 3):
            item = ds.load(sample)
            assert item.image.shape == (360, 480, 3) and item.image.dtype == np.uint8
            assert item.label is not None and item.label.shape == (360, 480)
            assert item.label.max() <= CAMVID.ignore_index
            assert len(item.image_id) == 16


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        CamVidLayout(str(tmp_path / "nowhere"), "train", CAMVID)
    msg = str(info.value)
    assert "nowhere does not exist" in msg and "data.root" in msg


def test_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        ImageFolder(str(tmp_path / "f"))


def test_unknown_protocol() -> None:
    with pytest.raises(DataError, match="cannot open nosuchproto://x"):
        ImageFolder("nosuchproto://x")


def test_missing_split_lists_existing(tmp_path: Path, make_camvid_tree) -> None:
    make_camvid_tree(str(tmp_path), {"train": 1, "val": 1})
    (tmp_path / "lonely").mkdir()  # no lonelyannot: not a split
    with pytest.raises(DataError) as info:
        CamVidLayout(str(tmp_path), "test", CAMVID)
    msg = str(info.value)
    assert f"{tmp_path}/test is not a folder" in msg
    assert "['train', 'val']" in msg and "data.split" in msg


def test_missing_annot_folder(tmp_path: Path, make_camvid_tree) -> None:
    make_camvid_tree(str(tmp_path), {"train": 1})
    (tmp_path / "extra").mkdir()
    with pytest.raises(DataError, match=r"label folder .*extraannot is missing"):
        CamVidLayout(str(tmp_path), "extra", CAMVID)


def test_empty_split(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "trainannot").mkdir()
    ds = CamVidLayout(str(tmp_path), "train", CAMVID)
    with pytest.raises(DataError, match=rf"no images in {tmp_path}/train"):
        list(ds.samples())


def test_image_without_label(tmp_path: Path, make_camvid_tree, memory_root: str) -> None:
    for root in (str(tmp_path), memory_root):
        make_camvid_tree(root, {"train": 3})
        ds = CamVidLayout(root, "train", CAMVID)
        from segloop.data.fs import url_to_fs

        fs, path = url_to_fs(root)
        fs.rm(f"{path}/trainannot/train_001.png")
        with pytest.raises(DataError) as info:
            len(ds)
        msg = str(info.value)
        assert "train/train_001.png has no label" in msg
        assert "expected" in msg and "trainannot/train_001.png" in msg


@pytest.mark.parametrize("problem", ["unreadable", "truncated", "size", "ids", "rgb"])
def test_bad_sample_names_file(
    tmp_path: Path, png, put_file, make_camvid_tree, problem: str
) -> None:
    root = str(tmp_path)
    make_camvid_tree(root, {"train": 2}, hw=(16, 16))
    image = f"{root}/train/train_001.png"
    label = f"{root}/trainannot/train_001.png"
    if problem == "unreadable":
        put_file(image, b"garbage")
        target, needle = image, "unreadable, corrupt or truncated"
    elif problem == "truncated":
        data = read_bytes(image)
        put_file(image, data[: len(data) // 2])
        target, needle = image, "unreadable, corrupt or truncated"
    elif problem == "size":
        put_file(label, png(np.zeros((15, 16), np.uint8)))
        target, needle = label, "is 15x16 (HxW) but its image"
    elif problem == "ids":
        put_file(label, png(np.full((16, 16), 99, np.uint8)))
        target, needle = label, "label ids 99 are not in the class spec"
    else:
        put_file(label, png(np.zeros((16, 16, 3), np.uint8)))
        target, needle = label, "single-channel"
    ds = CamVidLayout(root, "train", CAMVID)
    samples = list(ds.samples())
    ds.load(samples[0])  # the good one still loads
    with pytest.raises(DataError) as info:
        ds.load(samples[1])
    assert target in str(info.value) and needle in str(info.value)
    if problem == "size":
        assert image in str(info.value)


def test_image_folder(tmp_path: Path, memory_root: str, png, put_file) -> None:
    rgb = np.full((4, 5, 3), 7, np.uint8)
    for root in (str(tmp_path / "pool"), memory_root):
        put_file(f"{root}/b.png", png(rgb))
        put_file(f"{root}/a.JPEG", png(rgb, fmt="JPEG"))
        put_file(f"{root}/sub/c.png", png(rgb + 1))
        put_file(f"{root}/sub/notes.txt", b"x")
        put_file(f"{root}/.cache/d.png", png(rgb))
        ds = ImageFolder(root)
        assert [s.name for s in ds.samples()] == ["a.JPEG", "b.png", "sub/c.png"]
        assert all(s.label_url is None for s in ds.samples())
        assert len(ImageFolder(root, recursive=False)) == 2
        items = list(ds)
        assert all(x.label is None and x.image.shape == (4, 5, 3) for x in items)
        assert items[1].image_id == image_id(png(rgb))


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"pool does not exist"):
        ImageFolder(str(tmp_path / "pool"))
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "readme.md").write_text("x")
    with pytest.raises(DataError, match=rf"no images found recursively in {tmp_path}/pool"):
        list(ImageFolder(str(tmp_path / "pool")).samples())


def test_open_dataset(tmp_path: Path, make_camvid_tree) -> None:
    make_camvid_tree(str(tmp_path), {"train": 2})
    ds = open_dataset("camvid", str(tmp_path), "train", CAMVID)
    assert isinstance(ds, CamVidLayout) and len(ds) == 2
    folder = open_dataset("Folder", str(tmp_path), "train", CAMVID)
    assert isinstance(folder, ImageFolder) and len(folder) == 2
    assert len(open_dataset("folder", str(tmp_path / "train"), "", CAMVID)) == 2
    known = r"\['camvid', 'folder', 'manifest', 'voc'\]"
    with pytest.raises(DataError, match=r"unknown dataset format 'coco'.*" + known):
        open_dataset("coco", str(tmp_path), "train", CAMVID)


def test_sample_is_frozen() -> None:
    s = Sample("a", "x.png", None)
    with pytest.raises(AttributeError):
        s.name = "b"  # type: ignore[misc]


def test_layouts_build_on_base_not_on_each_other() -> None:
    """No import cycle in data/: the layouts import base.py; only datasets.py (the registry)
    imports the layouts."""
    import ast

    import segloop.data.datasets as registry

    folder = Path(registry.__file__).parent
    for path in sorted(folder.glob("*.py")):
        imported = {n.module for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.ImportFrom) and n.module}
        if path.name != "datasets.py":
            assert "segloop.data.datasets" not in imported, path.name
    assert registry.FORMATS == tuple(registry.LAYOUTS) == ("camvid", "folder", "manifest",
                                                            "voc")
