"""The embed flow's output folder: layout, atomic shards, resume bookkeeping and readers.

Layout of an output folder ``<out>`` (any fsspec URL; the flow uses a workspace folder)::

    <out>/embed.json                                    settings every shard was made with
    <out>/masks/source=<real|synthetic>/shard=<NNNNN>/part-0.parquet    mask_embeddings
    <out>/images/source=<real|synthetic>/shard=<NNNNN>/part-0.parquet   image_embeddings

A shard's image-embedding file (if any) is written before its masks file, each through
:class:`~segloop.data.parquet.TableWriter` (temporary name, then rename). The masks file
is the shard's commit point: an image is *present* when its name is in a masks file. A
killed writer leaves only a hidden temporary file, which :func:`sweep` deletes along
with image-embedding files whose masks file never appeared.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from segloop.data import rle, temp_files
from segloop.data.fs import join, url_to_fs
from segloop.data.parquet import TableWriter, read_metadata, read_table
from segloop.data.schemas import IMAGE_EMBEDDINGS, MASK_EMBEDDINGS, TableSchema
from segloop.data.settings_file import check_settings as _check_settings
from segloop.embed.tables import EmbeddedImage, image_table, mask_schema, mask_table
from segloop.errors import StoreError
from segloop.faults import kill_point

SETTINGS_FILE = "embed.json"
PART = "part-0.parquet"
KINDS = ("masks", "images")


def shard_url(out: str, kind: str, source: str, shard: int) -> str:
    """URL of one shard file (``kind`` is "masks" or "images")."""
    return join(out, kind, f"source={source}", f"shard={shard:05d}", PART)


def check_settings(out: str, settings: dict[str, Any]) -> None:
    """Record ``settings`` in ``<out>/embed.json`` or refuse an output made with others."""
    _check_settings(out, settings, SETTINGS_FILE, "embed.output")


def sweep(out: str) -> list[str]:
    """Delete leftovers of killed writers under ``out``; returns the deleted paths."""
    fs, root = url_to_fs(out)
    if not fs.exists(root):
        return []
    removed = temp_files.sweep(out)
    masks_root = posixpath.join(root.rstrip("/"), "masks")
    images_root = posixpath.join(root.rstrip("/"), "images")
    for path in fs.find(images_root) if fs.exists(images_root) else []:
        rel = path[len(images_root):]
        if path.endswith(".parquet") and not fs.exists(masks_root + rel):
            fs.rm(path)
            removed.append(path)
    return removed


def present(out: str) -> tuple[set[str], int]:
    """(names of the images already in ``out``, the next free shard number)."""
    fs, root = url_to_fs(out)
    shards = [-1]
    for kind in KINDS:
        base = posixpath.join(root.rstrip("/"), kind)
        if not fs.exists(base):
            continue
        for path in fs.find(base):
            for part in path.split("/"):
                if part.startswith("shard=") and part[6:].isdigit():
                    shards.append(int(part[6:]))
    masks = join(out, "masks")
    names: set[str] = set()
    if fs.exists(posixpath.join(root.rstrip("/"), "masks")):
        table = read_table(masks, MASK_EMBEDDINGS, columns=["name"])
        names = set(pc.unique(table.column("name")).to_pylist())
    return names, max(shards) + 1


class ShardWriter:
    """Stream the images of one shard into its files; commit on a clean exit, else drop.

    Use as a context manager and :meth:`add` each image as soon as it is extracted (only
    compact Arrow rows are buffered, never decoded masks). On a clean exit the image
    embeddings file (if any) is renamed into place first, then the masks file; on an
    exception both temporary files are deleted and nothing of the shard appears.
    """

    def __init__(
        self,
        out: str,
        source: str,
        shard: int,
        *,
        embedding_dtype: str = "float16",
        image_embeddings: bool = False,
        row_group_bytes: int = 64 * 2**20,
    ) -> None:
        self.urls = {"masks": shard_url(out, "masks", source, shard)}
        if image_embeddings:
            self.urls["images"] = shard_url(out, "images", source, shard)
        self.embedding_dtype = embedding_dtype
        self._masks = TableWriter(self.urls["masks"], mask_schema(embedding_dtype),
                                  row_group_bytes=row_group_bytes)
        self._images = (TableWriter(self.urls["images"], IMAGE_EMBEDDINGS,
                                    row_group_bytes=row_group_bytes)
                        if image_embeddings else None)
        self.images = 0
        self.rows = 0
        self.bytes_written = 0

    def add(self, item: EmbeddedImage) -> None:
        """Append one image's rows (P mask rows, plus its image embedding if kept)."""
        if self._images is not None:
            self._images.write(image_table([item]))
        table = mask_table([item], self.embedding_dtype)
        self._masks.write(table)
        kill_point("embed.shard.partial")
        self.images += 1
        self.rows += table.num_rows

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        writers = [w for w in (self._images, self._masks) if w is not None]
        if exc_type is not None:
            for w in writers:
                w.abort()
            return
        try:
            for w in writers:  # images first: the masks file is the commit point
                w.close()
            kill_point("embed.shard.written")
        except BaseException:
            for w in writers:
                w.abort()
            raise
        self.bytes_written = sum(_size(url) for url in self.urls.values())


def _size(url: str) -> int:
    fs, path = url_to_fs(url)
    return int(fs.size(path))


@dataclass
class Embeddings:
    """Grid-mode SAM outputs of n images with d points each, in the order asked for.

    Attributes:
        image_ids: n ids. names: their sample names. hw: (n, 2) int original sizes.
        tokens: (n, d, 1024) mask embeddings as stored (float16 by default), or None if not
            read.
        points: (n, d, 2) float32 (x, y). iou, stability: (n, d) float32.
        rles: n lists of d COCO RLE dicts (best mask per point), or None if not read.
    """

    image_ids: list[str]
    names: list[str]
    hw: np.ndarray
    points: np.ndarray
    iou: np.ndarray
    stability: np.ndarray
    tokens: np.ndarray | None
    rles: list[list[dict[str, Any]]] | None

    def masks(self, i: int) -> np.ndarray:
        """Decoded best masks of image ``i``: (d, H, W) bool."""
        if self.rles is None:
            raise StoreError("masks were not read; call read_embeddings(..., masks=True)")
        return rle.decode_many(self.rles[i], tuple(self.hw[i]))


_LIGHT = ["image_id", "name", "height", "width", "point_index", "point_x", "point_y",
          "predicted_iou", "stability_score"]


def read_embeddings(
    out: str,
    image_ids: list[str] | None = None,
    *,
    source: str | None = None,
    tokens: bool = True,
    masks: bool = True,
) -> Embeddings:
    """Read the outputs of ``image_ids`` (all images if None) from an embed output folder.

    Only the columns needed are read (``tokens=False`` skips the embedding column,
    ``masks=False`` the RLE column); ``source`` restricts to one partition. Unknown ids,
    or images with differing point counts, raise :class:`StoreError`.
    """
    columns = _LIGHT + (["embedding"] if tokens else []) + (["mask_rle"] if masks else [])
    filters: list[Any] = []
    if image_ids is not None:
        filters.append(pc.field("image_id").isin(list(image_ids)))
    if source is not None:
        filters.append(pc.field("source") == source)
    expr = None
    for f in filters:
        expr = f if expr is None else expr & f
    url = join(out, "masks")
    table = read_table(url, mask_schema(_stored_dtype(url)), columns=columns, filters=expr)
    table = table.sort_by([("image_id", "ascending"), ("point_index", "ascending")])
    ids = pc.unique(table.column("image_id")).to_pylist()
    wanted = list(dict.fromkeys(image_ids)) if image_ids is not None else ids
    missing = sorted(set(wanted) - set(ids))
    if missing:
        raise StoreError(f"{url}: no embeddings for {len(missing)} image id(s), e.g. "
                         f"{missing[:3]}; run the embed flow on those images first")
    return _assemble(table, wanted, url, tokens, masks)


def _assemble(table: Any, wanted: list[str], url: str,
              tokens: bool, masks: bool) -> Embeddings:
    """Rows sorted by (image_id, point_index) -> per-image arrays in ``wanted`` order."""
    image_col = table.column("image_id").to_numpy(zero_copy_only=False)
    point_index = table.column("point_index").to_numpy()
    # One image stored twice (the same file under two names): keep one copy of each point.
    dup = np.zeros(len(image_col), dtype=bool)
    dup[1:] = (image_col[1:] == image_col[:-1]) & (point_index[1:] == point_index[:-1])
    if dup.any():
        table = table.filter(pa.array(~dup))
        image_col = image_col[~dup]
    col = {name: table.column(name) for name in table.column_names}
    starts = np.searchsorted(image_col, wanted, side="left")
    ends = np.searchsorted(image_col, wanted, side="right")
    counts = set((ends - starts).tolist())
    if len(counts) != 1:
        raise StoreError(f"{url}: images have differing numbers of points {sorted(counts)}; "
                         "read them separately")
    d = counts.pop()
    take = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
    n = len(wanted)

    def arr(name: str) -> np.ndarray:
        return col[name].take(take).to_numpy(zero_copy_only=False)

    hw = np.stack([arr("height"), arr("width")], 1).reshape(n, d, 2)[:, 0].astype(int)
    emb = None
    if tokens:
        values = col["embedding"].take(take).combine_chunks().flatten().to_numpy()
        emb = values.reshape(n, d, -1)
    rles = None
    if masks:
        counts_col = arr("mask_rle").tolist()
        rles = [[{"size": [int(hw[i, 0]), int(hw[i, 1])], "counts": counts_col[i * d + j]}
                 for j in range(d)] for i in range(n)]
    return Embeddings(
        image_ids=wanted,
        names=arr("name").reshape(n, d)[:, 0].tolist(),
        hw=hw,
        points=np.stack([arr("point_x"), arr("point_y")], 1).reshape(n, d, 2),
        iou=arr("predicted_iou").reshape(n, d),
        stability=arr("stability_score").reshape(n, d),
        tokens=emb,
        rles=rles,
    )


def _stored_dtype(masks_url: str) -> str:
    """float16 or float32: the embedding type of the first masks file."""
    fs, path = url_to_fs(masks_url)
    files = sorted(p for p in fs.find(path) if p.endswith(".parquet")
                   and not posixpath.basename(p).startswith("."))
    if not files:
        return "float16"
    with fs.open(files[0], "rb") as fh:
        field = pq.read_schema(fh).field("embedding")
    return "float32" if field.type.value_type == pa.float32() else "float16"


def stored_schema(out: str) -> TableSchema:
    """The ``mask_embeddings`` schema of an output folder, with its stored embedding type."""
    return mask_schema(_stored_dtype(join(out, "masks")))


def read_image_embeddings(out: str, image_ids: list[str]) -> np.ndarray:
    """Image embeddings of ``image_ids``: (n, C, h, w) float16 (needs embed.image_embeddings)."""
    url = join(out, "images")
    fs, path = url_to_fs(url)
    if not fs.exists(path):
        raise StoreError(f"{url}: no image embeddings stored; set embed.image_embeddings: "
                         "true and run the embed flow again on a new output")
    table = read_table(url, IMAGE_EMBEDDINGS, columns=["image_id", "shape", "embedding"],
                       filters=pc.field("image_id").isin(list(image_ids)))
    found = {row_id: i for i, row_id in enumerate(table.column("image_id").to_pylist())}
    missing = [i for i in image_ids if i not in found]
    if missing:
        raise StoreError(f"{url}: no image embedding for {missing[:3]}")
    out_arrays = []
    for image in image_ids:
        row = found[image]
        shape = table.column("shape")[row].as_py()
        values = table.column("embedding")[row].values.to_numpy()
        out_arrays.append(values.reshape(shape))
    return np.stack(out_arrays)


def count_rows(out: str) -> int:
    """Rows in the masks table (from Parquet footers only; 0 if nothing is written yet)."""
    fs, path = url_to_fs(join(out, "masks"))
    if not fs.exists(path) or not any(p.endswith(".parquet") for p in fs.find(path)):
        return 0
    return read_metadata(join(out, "masks"))[2]
