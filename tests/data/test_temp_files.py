"""The one sweep of killed writers' temporary names."""

from __future__ import annotations

from pathlib import Path

from segloop.data import temp_files


def test_temp_names_are_recognised_and_unique() -> None:
    a, b = temp_files.temp_name("x.parquet"), temp_files.temp_name("x.parquet")
    assert a != b and a.startswith(".x.parquet.tmp-")
    assert temp_files.is_temp_name(a)
    assert temp_files.is_temp_name(temp_files.temp_name("cam.zip", temp_files.PARTIAL_INFIX))
    for kept in ("x.parquet", ".gitignore", "round_001", "notes.tmp-1"):
        assert not temp_files.is_temp_name(kept), kept


def test_sweep_removes_temp_files_and_folders_only(tmp_path: Path) -> None:
    (tmp_path / "keep" / "deep").mkdir(parents=True)
    (tmp_path / "keep" / "a.png").write_bytes(b"a")
    (tmp_path / "keep" / "deep" / ".a.png.tmp-0123456789ab").write_bytes(b"half")
    stale = tmp_path / ".round_003.tmp-ffffffffffff"
    (stale / "labels").mkdir(parents=True)
    (stale / "labels" / "x.png").write_bytes(b"x")
    (tmp_path / ".camvid.zip.partial-aaaaaaaaaaaa").write_bytes(b"z")

    top = temp_files.sweep(tmp_path, recursive=False)
    assert sorted(Path(p).name for p in top) == [".camvid.zip.partial-aaaaaaaaaaaa",
                                                 ".round_003.tmp-ffffffffffff"]
    assert (tmp_path / "keep" / "deep" / ".a.png.tmp-0123456789ab").exists()
    deep = temp_files.sweep(tmp_path)
    assert [Path(p).name for p in deep] == [".a.png.tmp-0123456789ab"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "keep", "keep/a.png", "keep/deep"]
    assert temp_files.sweep(tmp_path / "missing") == []


def test_sweep_works_on_any_fsspec_url() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/sweep/out/.m.parquet.tmp-000000000000", b"x")
    fs.pipe("/sweep/out/m.parquet", b"y")
    assert temp_files.sweep("memory://sweep/out") == ["/sweep/out/.m.parquet.tmp-000000000000"]
    assert fs.exists("/sweep/out/m.parquet")
