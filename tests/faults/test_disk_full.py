"""A full disk (ENOSPC) in each writer: a clear error naming the file, nothing partial left,
what was there before unchanged, and no retry."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec.implementations.local as local_fs
import pytest
import torch

from segloop.data.images import write_bytes_atomic
from segloop.data.json_io import write_json
from segloop.data.parquet import TableWriter, read_table, write_table
from segloop.data.schemas import MANIFEST
from segloop.errors import DataError, is_disk_full
from segloop.tasks._retry import is_transient
from segloop.train import checkpoint


@contextmanager
def disk_full_after(nbytes: int) -> Iterator[None]:
    """Local file writes fail with ENOSPC once ``nbytes`` have been written."""
    written = [0]
    original = local_fs.LocalFileOpener.write

    def write(self, data):  # type: ignore[no-untyped-def]
        written[0] += len(data)
        if written[0] > nbytes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data)

    local_fs.LocalFileOpener.write = write  # type: ignore[method-assign]
    try:
        yield
    finally:
        local_fs.LocalFileOpener.write = original  # type: ignore[method-assign]


def _rows(n: int) -> list[dict[str, object]]:
    return [{"image_id": f"{i:016x}", "name": f"img{i}.png", "split": "train",
             "source": "real", "image_uri": f"images/img{i}.png", "label_uri": None,
             "height": 4, "width": 4, "n_bytes": 10} for i in range(n)]


def _bytes(path: Path) -> Callable[[], None]:
    return lambda: write_bytes_atomic(str(path), b"new" * 1000)


def _json(path: Path) -> Callable[[], None]:
    return lambda: write_json(path, {"values": list(range(2000))})


def _table(path: Path) -> Callable[[], None]:
    return lambda: write_table(str(path), MANIFEST, _rows(500))


def _streamed(path: Path) -> Callable[[], None]:
    def run() -> None:
        with TableWriter(str(path), MANIFEST, row_group_bytes=2000) as w:
            for k in range(50):
                w.write_rows(_rows(20))
                assert k < 49
    return run


WRITERS = {"bytes": ("out.png", _bytes), "json": ("metrics.json", _json),
           "parquet": ("manifest.parquet", _table), "parquet-streamed": ("m.parquet", _streamed)}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_writer_on_a_full_disk(tmp_path: Path, name: str) -> None:
    file_name, make = WRITERS[name]
    path = tmp_path / file_name
    if name.startswith("parquet"):
        write_table(str(path), MANIFEST, _rows(1))
    else:
        path.write_bytes(b"old")
    before = path.read_bytes()
    with disk_full_after(200), pytest.raises(DataError) as info:
        make(path)()
    message = str(info.value)
    assert "no space left" in message and str(path) in message and "free space" in message
    assert is_disk_full(info.value) and not is_transient(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [file_name]  # no temporary file
    if name.startswith("parquet"):
        assert read_table(str(path), MANIFEST).num_rows == 1


def test_checkpoint_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "round_001.safetensors"
    model = torch.nn.Linear(3, 2)
    checkpoint.save_checkpoint(model, path, {"recipe": 1})
    before = path.read_bytes()

    def full(state, filename, metadata=None):  # type: ignore[no-untyped-def]
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(DataError, match=r"no space left to write .*round_001.safetensors"):
        checkpoint.save_checkpoint(torch.nn.Linear(3, 2), path, {"recipe": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_label_round_on_a_full_disk_leaves_no_round(tmp_path: Path) -> None:
    from segloop.versioning import commit_round, init_workspace, list_rounds

    ws = init_workspace(tmp_path / "ws", tmp_path / "remote")

    def write(folder: Path) -> None:
        write_table(str(folder / "round.parquet"), MANIFEST, _rows(300))

    with disk_full_after(100), pytest.raises(DataError, match="no space left"):
        commit_round(ws, 0, write)
    assert list_rounds(ws) == []
    labels = ws.root / "data" / "labels"
    assert not labels.exists() or not any(labels.iterdir())
