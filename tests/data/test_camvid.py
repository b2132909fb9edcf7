from __future__ import annotations

from pathlib import Path

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from segloop.data.camvid import (
    CAMVID_COUNTS,
    DEFAULT_SOURCE,
    download_camvid,
    has_splits,
    is_complete,
    locate_camvid,
)
from segloop.data.classes import CAMVID
from segloop.data.datasets import CamVidLayout
from segloop.data.fs import read_bytes, url_to_fs
from segloop.errors import DataError

COUNTS = {"train": 3, "val": 2}


@pytest.fixture
def source(memory_root: str, make_camvid_tree) -> str:
    src = f"{memory_root}/src"
    make_camvid_tree(src, COUNTS)
    return src


def test_constants() -> None:
    assert CAMVID_COUNTS == {"train": 367, "val": 101, "test": 233}
    assert DEFAULT_SOURCE.startswith("github://")


def test_explicit_root_is_returned(tmp_path: Path) -> None:
    got = locate_camvid(str(tmp_path), candidates=[], download_dir=str(tmp_path / "dl"))
    assert got == str(tmp_path)


def test_explicit_missing_root(tmp_path: Path) -> None:
    missing = str(tmp_path / "elsewhere")
    with pytest.raises(DataError) as info:
        locate_camvid(missing, candidates=[], download_dir=str(tmp_path / "dl"), download=False)
    msg = str(info.value)
    assert missing in msg and "data.root: auto" in msg and "trainannot/" in msg


def test_auto_picks_first_candidate_with_splits(tmp_path: Path, make_camvid_tree) -> None:
    only_train = tmp_path / "a"
    make_camvid_tree(str(only_train), {"train": 1})
    good = tmp_path / "b"
    make_camvid_tree(str(good), {"train": 1, "val": 1})
    also_good = tmp_path / "c"
    make_camvid_tree(str(also_good), {"train": 1, "val": 1})
    cands = [str(tmp_path / "missing"), str(only_train), str(good), str(also_good)]
    got = locate_camvid("auto", candidates=cands, download_dir=str(tmp_path / "dl"))
    assert got == str(good)
    assert has_splits(str(good), ("train", "val")) and not has_splits(str(only_train), ["val"])


def test_auto_uses_complete_download_dir(tmp_path: Path, make_camvid_tree) -> None:
    dl = str(tmp_path / "dl")
    make_camvid_tree(dl, COUNTS)
    got = locate_camvid(
        "auto", candidates=[], download_dir=dl, download=False, expected_counts=COUNTS
    )
    assert got == dl
    assert not is_complete(dl, ("train", "val"), {"train": 4, "val": 2})


def test_auto_not_found_without_download(tmp_path: Path, make_camvid_tree) -> None:
    cands = [str(tmp_path / "x"), str(tmp_path / "y")]
    dl = str(tmp_path / "dl")
    make_camvid_tree(dl, {"train": 1, "val": 1})  # present but incomplete for the counts
    with pytest.raises(DataError) as info:
        locate_camvid("auto", candidates=cands, download_dir=dl, download=False)
    msg = str(info.value)
    for path in (*cands, dl):
        assert path in msg
    assert "train/, trainannot/, val/, valannot/" in msg and "data.root" in msg


def test_auto_downloads(tmp_path: Path, source: str) -> None:
    dl = str(tmp_path / "data" / "camvid")
    got = locate_camvid(
        "auto",
        candidates=[str(tmp_path / "nope")],
        download_dir=dl,
        source=source,
        expected_counts=COUNTS,
        progress=False,
    )
    assert got == dl
    assert is_complete(dl, ("train", "val"), COUNTS)
    assert len(CamVidLayout(dl, "val", CAMVID)) == 2
    name = "train_002.png"
    assert read_bytes(f"{dl}/trainannot/{name}") == read_bytes(f"{source}/trainannot/{name}")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["camvid"]


def test_auto_download_failure_says_where_it_looked(tmp_path: Path, memory_root: str) -> None:
    dl = str(tmp_path / "dl")
    with pytest.raises(DataError) as info:
        locate_camvid(
            "auto",
            candidates=[str(tmp_path / "c1")],
            download_dir=dl,
            source=f"{memory_root}/empty",
            progress=False,
        )
    msg = str(info.value)
    assert "download" in msg and f"{memory_root}/empty" in msg
    assert str(tmp_path / "c1") in msg and dl in msg and "valannot/" in msg
    assert not (tmp_path / "dl").exists()


@pytest.mark.parametrize("dest_kind", ["local", "memory"])
def test_download_camvid(tmp_path: Path, memory_root: str, source: str, dest_kind: str) -> None:
    dest = str(tmp_path / "cv") if dest_kind == "local" else f"{memory_root}/cv"
    got = download_camvid(source, dest, splits=("train", "val"), expected_counts=COUNTS,
                          progress=False)  # fmt: skip
    assert got == dest
    assert is_complete(dest, ("train", "val"), COUNTS)
    fs, path = url_to_fs(dest)
    parent = path.rsplit("/", 1)[0]
    leftovers = [p for p in fs.ls(parent, detail=False) if "partial" in p]
    assert leftovers == []
    # a complete dest is returned as is
    assert download_camvid(source, dest, expected_counts=COUNTS, progress=False) == dest


def test_count_mismatch_leaves_nothing(tmp_path: Path, source: str) -> None:
    dest = tmp_path / "cv"
    with pytest.raises(DataError) as info:
        download_camvid(source, str(dest), expected_counts={"train": 3, "val": 5}, progress=False)
    msg = str(info.value)
    assert f"{source}/val holds 2 images but 5 were expected" in msg
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_failure_mid_copy_leaves_nothing(tmp_path: Path, source: str, monkeypatch) -> None:
    calls = {"n": 0}
    real = MemoryFileSystem.cat_file

    def flaky(self, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("connection reset")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "cat_file", flaky)
    with pytest.raises(OSError, match="connection reset"):
        download_camvid(source, str(tmp_path / "cv"), expected_counts=COUNTS, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_missing_source_folder(tmp_path: Path, source: str) -> None:
    with pytest.raises(DataError, match=r"/src/test does not exist"):
        download_camvid(
            source, str(tmp_path / "cv"), splits=("test",), expected_counts=COUNTS, progress=False
        )


def test_existing_incomplete_dest_is_not_touched(tmp_path: Path, source: str) -> None:
    dest = tmp_path / "cv"
    (dest / "train").mkdir(parents=True)
    (dest / "train" / "mine.png").write_bytes(b"user data")
    with pytest.raises(DataError, match="exists but is not a complete CamVid"):
        download_camvid(source, str(dest), expected_counts=COUNTS, progress=False)
    assert (dest / "train" / "mine.png").read_bytes() == b"user data"


def test_empty_dest_folder_is_replaced(tmp_path: Path, source: str) -> None:
    dest = tmp_path / "cv"
    dest.mkdir()
    download_camvid(source, str(dest), expected_counts=COUNTS, progress=False)
    assert is_complete(str(dest), ("train", "val"), COUNTS)
