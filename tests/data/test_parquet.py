"""Tests of the Parquet store: atomic streaming writer, schema-checked readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFile

from segloop.data.parquet import TableWriter, read_metadata, read_table, write_table
from segloop.data.schemas import LABEL_ROUND, MANIFEST, TABLE_KEY, VERSION_KEY, get_schema
from segloop.errors import StoreError


def manifest_rows(n: int, start: int = 0, name_len: int = 8) -> list[dict]:
    return [
        {
            "image_id": f"{i:016x}",
            "name": f"img_{i}".ljust(name_len, "x"),
            "split": "train" if i % 3 else "val",
            "source": "real" if i % 2 else "synthetic",
            "image_uri": f"images/img_{i}.png",
            "label_uri": None if i % 4 == 0 else f"labels/img_{i}.png",
            "height": 10 + i,
            "width": 20 + i,
            "n_bytes": 1000 * i,
        }
        for i in range(start, start + n)
    ]


def label_rows(n: int) -> list[dict]:
    return [
        {
            "round": 1,
            "image_id": f"{i:016x}",
            "name": f"img_{i}",
            "region_id": -1 if i % 2 else i,
            "label_uri": f"masks/img_{i}.png",
            "labelled_pixels": 50 * i,
            "total_pixels": 100 * i + 1,
            "cost": 1.5 * i,
            "strategy": "entropy",
            "score": None if i == 0 else 0.1 * i,
            "annotator": "alice",
            "created_at": datetime(2024, 5, 1, 12, 0, i, 123456, tzinfo=UTC),
        }
        for i in range(n)
    ]


@pytest.fixture
def mem_dir() -> Iterator[str]:
    url = f"memory://segloop-test-{uuid.uuid4().hex}"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


@pytest.fixture(params=["local", "file", "memory"])
def base_url(request: pytest.FixtureRequest, tmp_path: Path, mem_dir: str) -> str:
    return {"local": str(tmp_path), "file": f"file://{tmp_path}", "memory": mem_dir}[request.param]


def visible(fs_url: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(fs_url)
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))


@pytest.mark.parametrize(
    "table, rows", [(MANIFEST, manifest_rows(20)), (LABEL_ROUND, label_rows(7))]
)
def test_round_trip(base_url: str, table: str, rows: list[dict]) -> None:
    url = f"{base_url}/t.parquet"
    with TableWriter(url, table) as writer:
        writer.write_rows(rows[:5])
        writer.write_rows(rows[5:])
        assert writer.rows_written == len(rows)
    got = read_table(url, table)
    assert got.schema.equals(get_schema(table).arrow, check_metadata=True)
    assert got.to_pylist() == rows
    assert visible(base_url) == ["t.parquet"]  # the temporary file is gone


def test_write_table_accepts_arrow_and_casts(tmp_path: Path) -> None:
    data = pa.Table.from_pylist(manifest_rows(4))  # int64 height/width: cast to int32
    url = str(tmp_path / "m.parquet")
    write_table(url, MANIFEST, data.to_batches()[0])
    assert pq.read_schema(url).field("height").type == pa.int32()
    assert read_table(url).to_pylist() == manifest_rows(4)  # table taken from metadata


def test_metadata_has_table_and_version(tmp_path: Path) -> None:
    url = str(tmp_path / "m.parquet")
    write_table(url, MANIFEST, manifest_rows(3))
    meta = pq.read_schema(url).metadata
    assert meta[TABLE_KEY] == b"manifest" and meta[VERSION_KEY] == b"1"
    assert read_metadata(url) == ("manifest", 1, 3)
    assert pq.ParquetFile(url).metadata.row_group(0).column(0).compression == "ZSTD"


def test_projection_returns_only_asked_columns(base_url: str) -> None:
    url = f"{base_url}/m.parquet"
    write_table(url, MANIFEST, manifest_rows(10))
    got = read_table(url, MANIFEST, columns=["height", "image_id"])
    assert got.column_names == ["height", "image_id"]
    assert got.column("height").to_pylist() == list(range(10, 20))


def test_projection_does_not_read_other_columns(
    mem_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{mem_dir}/m.parquet"
    rows = manifest_rows(400)
    for row in rows:  # a heavy, incompressible column
        row["name"] = os.urandom(2000).hex()
    write_table(url, MANIFEST, rows, compression="none")
    size = fsspec.filesystem("memory").size(url)
    read = 0
    original = MemoryFile.read

    def counting_read(self: MemoryFile, *args: int) -> bytes:
        nonlocal read
        out = original(self, *args)
        read += len(out)
        return out

    monkeypatch.setattr(MemoryFile, "read", counting_read)
    got = read_table(url, MANIFEST, columns=["height"])
    assert got.num_rows == 400
    # Footer (Arrow reads the last 64 KiB at once) plus one small column, not 1.6 MB.
    assert read < size / 10, (read, size)


def test_filters_dnf_and_expression(base_url: str) -> None:
    url = f"{base_url}/m.parquet"
    rows = manifest_rows(30)
    write_table(url, MANIFEST, rows, row_group_bytes=1024)
    got = read_table(url, MANIFEST, columns=["image_id"], filters=[("split", "=", "val")])
    want = [r["image_id"] for r in rows if r["split"] == "val"]
    assert got.column_names == ["image_id"] and got.column(0).to_pylist() == want
    got = read_table(url, filters=(ds.field("height") >= 35) & (ds.field("source") == "real"))
    assert got.column("height").to_pylist() == [35, 37, 39]
    got = read_table(url, filters=[[("height", "<", 11)], [("height", ">", 38)]])
    assert got.column("height").to_pylist() == [10, 39]


def test_row_groups_sized_by_bytes(tmp_path: Path) -> None:
    small, big = str(tmp_path / "small.parquet"), str(tmp_path / "big.parquet")
    rows = manifest_rows(300)
    with TableWriter(small, MANIFEST, row_group_bytes=4096) as writer:
        for i in range(0, 300, 7):  # many small writes
            writer.write_rows(rows[i : i + 7])
    write_table(big, MANIFEST, rows)
    meta = pq.ParquetFile(small).metadata
    assert meta.num_row_groups > 5
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert max(sizes[:-1]) - min(sizes[:-1]) <= 8  # about the same bytes each
    assert pq.ParquetFile(big).metadata.num_row_groups == 1
    # One large write is split too, and wide rows make smaller row groups.
    wide = str(tmp_path / "wide.parquet")
    write_table(wide, MANIFEST, manifest_rows(300, name_len=200), row_group_bytes=4096)
    wide_meta = pq.ParquetFile(wide).metadata
    assert wide_meta.num_row_groups > 2 * meta.num_row_groups
    assert read_table(wide).num_rows == read_table(small).num_rows == 300


def _write_raw(path: str, table: str, version: bytes) -> None:
    schema = get_schema(table).arrow
    schema = schema.with_metadata({**schema.metadata, VERSION_KEY: version})
    pq.write_table(pa.Table.from_pylist(manifest_rows(2), schema=schema), path)


def test_newer_schema_version_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "m.parquet")
    _write_raw(path, MANIFEST, b"99")
    for call in (lambda: read_table(path), lambda: read_table(path, MANIFEST)):
        with pytest.raises(StoreError, match="upgrade segloop") as info:
            call()
        assert "m.parquet" in str(info.value) and "99" in str(info.value)
    with pytest.raises(StoreError, match="upgrade segloop"):
        read_metadata(str(tmp_path))


def test_wrong_table_and_foreign_files_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "m.parquet")
    write_table(path, MANIFEST, manifest_rows(2))
    with pytest.raises(StoreError, match="holds table 'manifest', not 'label_round'"):
        read_table(path, LABEL_ROUND)
    write_table(str(tmp_path / "l.parquet"), LABEL_ROUND, label_rows(2))
    with pytest.raises(StoreError, match="label_round"):
        read_table(str(tmp_path), MANIFEST)
    with pytest.raises(StoreError, match="mixes tables"):
        read_metadata(str(tmp_path))
    plain = str(tmp_path / "plain.parquet")
    pq.write_table(pa.table({"a": [1]}), plain)
    with pytest.raises(StoreError, match="not a segloop table"):
        read_table(plain)


def test_missing_url_and_unknown_column(tmp_path: Path, mem_dir: str) -> None:
    for url in (str(tmp_path / "nope.parquet"), f"{mem_dir}/nope.parquet"):
        with pytest.raises(StoreError, match="nope.parquet: no such file"):
            read_table(url, MANIFEST)
    path = str(tmp_path / "m.parquet")
    write_table(path, MANIFEST, manifest_rows(2))
    with pytest.raises(StoreError, match="no column 'heigth'.*'height'"):
        read_table(path, columns=["heigth"])
    with pytest.raises(StoreError, match="heigth"):
        read_table(path, filters=[("heigth", ">", 1)])


@pytest.mark.parametrize(
    "change, column",
    [
        ({"height": None}, "height"),  # missing non-null column
        ({"image_id": None, "keep": True}, "image_id"),  # null in non-null column
        ({"height": "tall", "keep": True}, "height"),  # wrong type
        ({"width": 1.5, "keep": True}, "width"),  # float for int
        ({"n_bytes": "9", "keep": True}, "n_bytes"),  # string for int
        ({"height": 2**40, "keep": True}, "height"),  # out of int32 range
        ({"colour": "red", "keep": True}, "colour"),  # unknown column
    ],
)
def test_bad_rows_name_the_column(tmp_path: Path, change: dict, column: str) -> None:
    row = manifest_rows(1)[0]
    change = dict(change)
    keep = change.pop("keep", False)
    for key, value in change.items():
        if keep:
            row[key] = value
        else:
            del row[key]
    url = str(tmp_path / "m.parquet")
    with pytest.raises(StoreError, match=f"'{column}'") as info:
        write_table(url, MANIFEST, [manifest_rows(1)[0], row])
    assert "manifest" in str(info.value) and "m.parquet" in str(info.value)
    assert visible(str(tmp_path)) == []


def test_bad_arrow_type_names_the_column(tmp_path: Path) -> None:
    data = pa.Table.from_pylist(manifest_rows(2)).set_column(6, "height", pa.array(["a", "b"]))
    with pytest.raises(StoreError, match="'height' must be int32, got string"):
        write_table(str(tmp_path / "m.parquet"), MANIFEST, data)


def test_exception_inside_with_keeps_older_file(base_url: str) -> None:
    url = f"{base_url}/m.parquet"
    write_table(url, MANIFEST, manifest_rows(3))
    with pytest.raises(RuntimeError, match="boom"):
        with TableWriter(url, MANIFEST, row_group_bytes=512) as writer:
            writer.write_rows(manifest_rows(50, start=100))  # row groups already on disk
            raise RuntimeError("boom")
    assert visible(base_url) == ["m.parquet"]
    assert read_table(url).to_pylist() == manifest_rows(3)
    with pytest.raises(StoreError, match="aborted"):
        writer.write_rows(manifest_rows(1))


def test_no_final_file_until_close_and_abort(base_url: str) -> None:
    url = f"{base_url}/m.parquet"
    writer = TableWriter(url, MANIFEST, row_group_bytes=512)
    writer.write_rows(manifest_rows(50))
    assert visible(base_url) == [writer.tmp_path.rsplit("/", 1)[-1]]
    assert visible(base_url)[0].startswith(".m.parquet.tmp-")
    assert read_table(base_url, MANIFEST).num_rows == 0  # hidden temp files are ignored
    writer.abort()
    assert visible(base_url) == []
    empty = f"{base_url}/empty.parquet"
    write_table(empty, MANIFEST, [])
    assert read_table(empty).schema.equals(get_schema(MANIFEST).arrow)


@pytest.mark.parametrize("mode", ["kill", "exit"])
def test_killed_writer_leaves_no_visible_file(tmp_path: Path, mode: str) -> None:
    write_table(str(tmp_path / "good.parquet"), MANIFEST, manifest_rows(3))
    script = Path(__file__).with_name("_killed_writer.py")
    target = str(tmp_path / "new.parquet")
    child = subprocess.Popen(
        [sys.executable, str(script), target, mode], stdout=subprocess.PIPE, text=True
    )
    try:
        tmp_file = child.stdout.readline().strip()  # type: ignore[union-attr]
        assert tmp_file, "child did not start writing"
        if mode == "kill":
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.stdout.close()  # type: ignore[union-attr]
    assert os.path.getsize(tmp_file) > 0  # row groups were on disk when it died
    assert Path(tmp_file).name.startswith(".new.parquet.tmp-")
    assert not Path(target).exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["good.parquet"]
    assert read_table(str(tmp_path)).to_pylist() == manifest_rows(3)


def test_directory_hive_partitions_and_ignored_files(base_url: str) -> None:
    rows = manifest_rows(12)
    for source in ("real", "synthetic"):
        part = [r for r in rows if r["source"] == source]
        for shard in (0, 1):
            url = f"{base_url}/source={source}/shard={shard:05d}/part.parquet"
            write_table(url, MANIFEST, part[shard::2])
    write_table(f"{base_url}/_scratch/x.parquet", LABEL_ROUND, label_rows(1))
    write_table(f"{base_url}/.hidden.parquet", LABEL_ROUND, label_rows(1))
    fs, path = fsspec.core.url_to_fs(base_url)
    fs.pipe(f"{path}/notes.txt", b"not parquet")
    got = read_table(base_url, MANIFEST)
    assert got.num_rows == 12 and got.column_names[-1] == "shard"
    assert got.schema.field("shard").type == pa.string()
    assert got.schema.field("source").type == pa.string()
    got = read_table(
        base_url,
        columns=["image_id", "shard"],
        filters=[("source", "=", "real"), ("shard", "=", "00001")],
    )
    real = [r["image_id"] for r in rows if r["source"] == "real"]
    assert sorted(got.column("image_id").to_pylist()) == sorted(real[1::2])
    assert set(got.column("shard").to_pylist()) == {"00001"}
    assert read_metadata(base_url) == ("manifest", 1, 12)


def test_empty_directory(tmp_path: Path) -> None:
    assert read_table(str(tmp_path), MANIFEST, columns=["name"]).column_names == ["name"]
    with pytest.raises(StoreError, match="pass table="):
        read_table(str(tmp_path))


def test_writer_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unknown table 'nope'.*manifest"):
        TableWriter(str(tmp_path / "x.parquet"), "nope")
    with pytest.raises(StoreError, match="row_group_bytes"):
        TableWriter(str(tmp_path / "x.parquet"), MANIFEST, row_group_bytes=0)
    with pytest.raises(StoreError, match="compression"):
        TableWriter(str(tmp_path / "x.parquet"), MANIFEST, compression="zip")
    writer = TableWriter(str(tmp_path / "x.parquet"), MANIFEST, compression="snappy")
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        writer.write_rows(manifest_rows(1))


def test_float_lists_are_plain_encoded_everything_else_dictionary(tmp_path: Path) -> None:
    import numpy as np

    from segloop.data.schemas import MASK_EMBEDDINGS, MASK_TOKEN_DIM

    rng = np.random.default_rng(0)
    rows = [{"image_id": "a", "name": "a", "height": 2, "width": 2, "point_index": i,
             "point_x": 0.0, "point_y": 0.0,
             "embedding": rng.normal(size=MASK_TOKEN_DIM).astype(np.float16).tolist(),
             "mask_rle": "4", "mask_index": 0, "predicted_iou": 1.0, "stability_score": 1.0,
             "bbox_xyxy": [0, 0, 1, 1], "area": 4} for i in range(3)]
    path = tmp_path / "m.parquet"
    write_table(str(path), MASK_EMBEDDINGS, rows)
    group = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings
                 for i in range(group.num_columns)}
    assert "RLE_DICTIONARY" not in encodings["embedding.list.element"]
    assert "RLE_DICTIONARY" in encodings["image_id"]
    assert "RLE_DICTIONARY" in encodings["bbox_xyxy.list.element"]
    back = read_table(str(path), MASK_EMBEDDINGS, columns=["embedding"])
    assert back.column("embedding").to_pylist()[1] == rows[1]["embedding"]
