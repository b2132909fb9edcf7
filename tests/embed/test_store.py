"""The embed output folder: schema, atomic shards, RLE round trip, readers and settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segloop.data import rle
from segloop.data.parquet import read_table
from segloop.data.schemas import MASK_EMBEDDINGS, TABLE_KEY
from segloop.embed import store
from segloop.embed.extract import ImageMasks, MaskEmbedder
from segloop.embed.tables import EmbeddedImage
from segloop.errors import StoreError
from segloop.models import LoadedSam


def _extract(sam: LoadedSam, images: list[np.ndarray], **kw: object) -> list[EmbeddedImage]:
    embedder = MaskEmbedder(sam, **kw)  # type: ignore[arg-type]
    feats, sizes = embedder.encode(images)
    return [EmbeddedImage(f"{i:016x}", f"img_{i}.png",
                          embedder.decode(feats[i : i + 1], im.shape[:2], sizes[i]), sizes[i])
            for i, im in enumerate(images)]


def _write(out: str, items: list[EmbeddedImage], shard: int = 0, **kw: object) -> int:
    with store.ShardWriter(out, "real", shard, **kw) as writer:  # type: ignore[arg-type]
        for item in items:
            writer.add(item)
    return writer.bytes_written


def test_shard_file_schema_compression_and_partitions(
    tiny_sam: LoadedSam, images: list[np.ndarray], tmp_path: Path
) -> None:
    items = _extract(tiny_sam, images)
    out = str(tmp_path / "emb")
    written = _write(out, items)
    path = store.shard_url(out, "masks", "real", 0)
    assert written == Path(path).stat().st_size > 0
    meta = pq.read_metadata(path)
    assert meta.schema.to_arrow_schema().metadata[TABLE_KEY] == MASK_EMBEDDINGS.encode()
    assert meta.row_group(0).column(0).compression == "ZSTD"
    emb_type = meta.schema.to_arrow_schema().field("embedding").type
    assert emb_type == pa.list_(pa.float16(), 1024)
    table = read_table(str(tmp_path / "emb" / "masks"), MASK_EMBEDDINGS,
                       columns=["image_id", "source", "shard", "point_index"])
    assert table.num_rows == 300
    assert set(table.column("source").to_pylist()) == {"real"}
    assert set(table.column("shard").to_pylist()) == {"00000"}
    assert not list(Path(out).rglob(".*tmp*"))


def test_stored_masks_round_trip_exactly(
    tiny_sam: LoadedSam, images: list[np.ndarray], tmp_path: Path
) -> None:
    items = _extract(tiny_sam, images, all_masks=True)
    out = str(tmp_path / "emb")
    _write(out, items)
    got = store.read_embeddings(out, [i.image_id for i in items])
    for k, item in enumerate(items):
        res: ImageMasks = item.result
        np.testing.assert_array_equal(got.masks(k), res.masks)
        np.testing.assert_array_equal(got.iou[k], res.iou)
        np.testing.assert_array_equal(got.points[k], res.points)
        np.testing.assert_array_equal(got.tokens[k], res.tokens.astype(np.float16))
    table = read_table(out + "/masks", MASK_EMBEDDINGS,
                       columns=["image_id", "all_mask_rle", "bbox_xyxy", "area"])
    first = table.filter(pa.compute.equal(table.column("image_id"), items[0].image_id))
    h, w = images[0].shape[:2]
    for p in (0, 55):
        stored = first.column("all_mask_rle")[p].as_py()
        decoded = rle.decode_many([{"size": [h, w], "counts": c} for c in stored])
        np.testing.assert_array_equal(decoded, items[0].result.all_masks[p])
        assert first.column("area")[p].as_py() == items[0].result.areas[p]
        assert first.column("bbox_xyxy")[p].as_py() == items[0].result.boxes[p].tolist()


def test_reader_shapes_order_and_projection(
    tiny_sam: LoadedSam, images: list[np.ndarray], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _extract(tiny_sam, images)
    out = str(tmp_path / "emb")
    _write(out, items[:2], shard=0)
    _write(out, items[2:], shard=1)
    ids = [items[2].image_id, items[0].image_id]
    got = store.read_embeddings(out, ids)
    assert got.image_ids == ids and got.names == ["img_2.png", "img_0.png"]
    assert got.tokens.shape == (2, 100, 1024) and got.tokens.dtype == np.float16
    assert got.iou.shape == got.stability.shape == (2, 100)
    assert got.points.shape == (2, 100, 2)
    assert got.hw.tolist() == [list(images[2].shape[:2]), list(images[0].shape[:2])]
    assert got.masks(0).shape == (100,) + images[2].shape[:2]

    seen: list[list[str]] = []
    real_read = store.read_table

    def spy(url, table=None, *, columns=None, **kw):  # type: ignore[no-untyped-def]
        seen.append(list(columns))
        return real_read(url, table, columns=columns, **kw)

    monkeypatch.setattr(store, "read_table", spy)
    light = store.read_embeddings(out, ids, tokens=False, masks=False)
    assert light.tokens is None and light.rles is None
    assert "embedding" not in seen[-1] and "mask_rle" not in seen[-1]
    with pytest.raises(StoreError, match="masks were not read"):
        light.masks(0)


def test_unknown_ids_and_all_ids(
    tiny_sam: LoadedSam, images: list[np.ndarray], tmp_path: Path
) -> None:
    items = _extract(tiny_sam, images[:2])
    out = str(tmp_path / "emb")
    _write(out, items)
    assert store.read_embeddings(out).image_ids == sorted(i.image_id for i in items)
    with pytest.raises(StoreError, match="no embeddings for 1 image id"):
        store.read_embeddings(out, [items[0].image_id, "ffffffffffffffff"])


def test_float32_embeddings_and_image_embeddings(
    tiny_sam: LoadedSam, images: list[np.ndarray], tmp_path: Path
) -> None:
    items = _extract(tiny_sam, images, image_embeddings=True)
    out = str(tmp_path / "emb")
    _write(out, items, embedding_dtype="float32", image_embeddings=True)
    got = store.read_embeddings(out, [items[1].image_id])
    assert got.tokens.dtype == np.float32
    np.testing.assert_array_equal(got.tokens[0], items[1].result.tokens)
    emb = store.read_image_embeddings(out, [items[1].image_id, items[0].image_id])
    assert emb.shape == (2, 256, 8, 8) and emb.dtype == np.float16
    np.testing.assert_array_equal(emb[0], items[1].result.image_embedding.astype(np.float16))


def test_failed_shard_leaves_nothing(
    tiny_sam: LoadedSam, images: list[np.ndarray], tmp_path: Path
) -> None:
    items = _extract(tiny_sam, images)
    out = str(tmp_path / "emb")
    with pytest.raises(RuntimeError), store.ShardWriter(out, "real", 0,
                                                         image_embeddings=True) as writer:
        writer.add(items[0])
        raise RuntimeError("killed")
    assert not [p for p in Path(out).rglob("*") if p.is_file()]
    assert store.present(out) == (set(), 0)


def test_sweep_removes_leftovers_of_killed_writers(tmp_path: Path) -> None:
    out = tmp_path / "emb"
    tmp = out / "masks/source=real/shard=00003/.part-0.parquet.tmp-abc"
    orphan = out / "images/source=real/shard=00004/part-0.parquet"
    for path in (tmp, orphan):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"partial")
    removed = store.sweep(str(out))
    assert sorted(Path(p).name for p in removed) == [".part-0.parquet.tmp-abc", "part-0.parquet"]
    assert not tmp.exists() and not orphan.exists()
    assert store.present(str(out)) == (set(), 0)


def test_settings_mismatch_is_refused(tmp_path: Path) -> None:
    out = str(tmp_path / "emb")
    store.check_settings(out, {"points_per_side": 10, "sam_variant": "vit_b"})
    store.check_settings(out, {"points_per_side": 10, "sam_variant": "vit_b"})
    with pytest.raises(StoreError, match="points_per_side: 10 there, 16 now"):
        store.check_settings(out, {"points_per_side": 16, "sam_variant": "vit_b"})
