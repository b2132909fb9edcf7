"""Arrow tables of the embed flow's output, built column-wise from :class:`ImageMasks`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from segloop.data import rle
from segloop.data.schemas import (
    IMAGE_EMBEDDINGS,
    MASK_EMBEDDINGS,
    MASK_TOKEN_DIM,
    TableSchema,
    get_schema,
)
from segloop.embed.extract import ImageMasks

EMBEDDING_DTYPES = {"float16": (np.float16, pa.float16()), "float32": (np.float32, pa.float32())}


@dataclass(frozen=True)
class EmbeddedImage:
    """One image's extraction result with its identity in the dataset."""

    image_id: str
    name: str
    result: ImageMasks
    input_hw: tuple[int, int]


def mask_schema(embedding_dtype: str = "float16") -> TableSchema:
    """The ``mask_embeddings`` table with embeddings stored as ``embedding_dtype``."""
    _, arrow_type = EMBEDDING_DTYPES[embedding_dtype]
    return get_schema(MASK_EMBEDDINGS).with_type(
        "embedding", pa.list_(arrow_type, MASK_TOKEN_DIM))


def mask_table(images: Sequence[EmbeddedImage], embedding_dtype: str = "float16") -> pa.Table:
    """``mask_embeddings`` rows of ``images`` (P rows each, in point order)."""
    schema = mask_schema(embedding_dtype)
    np_type = EMBEDDING_DTYPES[embedding_dtype][0]
    if not images:
        return schema.arrow.empty_table()
    cols: dict[str, list[np.ndarray] | list[str]] = {k: [] for k in schema.columns}
    keep_all = images[0].result.all_masks is not None
    for item in images:
        r = item.result
        p = len(r.points)
        h, w = r.masks.shape[1:]
        cols["image_id"] += [item.image_id] * p
        cols["name"] += [item.name] * p
        cols["height"].append(np.full(p, h, np.int32))
        cols["width"].append(np.full(p, w, np.int32))
        cols["point_index"].append(np.arange(p, dtype=np.int16))
        cols["point_x"].append(r.points[:, 0])
        cols["point_y"].append(r.points[:, 1])
        cols["embedding"].append(r.tokens.astype(np_type).reshape(-1))
        cols["mask_rle"] += [m["counts"] for m in rle.encode_many(r.masks)]
        cols["mask_index"].append(r.best.astype(np.int8))
        cols["predicted_iou"].append(r.iou.astype(np.float32))
        cols["stability_score"].append(r.stability.astype(np.float32))
        cols["bbox_xyxy"].append(r.boxes.astype(np.int32).reshape(-1))
        cols["area"].append(r.areas.astype(np.int64))
        if keep_all:
            assert r.all_masks is not None and r.all_iou is not None
            assert r.all_stability is not None
            flat = r.all_masks.reshape(p * 3, h, w)
            cols["all_mask_rle"] += [m["counts"] for m in rle.encode_many(flat)]
            cols["all_predicted_iou"].append(r.all_iou.astype(np.float32).reshape(-1))
            cols["all_stability_score"].append(r.all_stability.astype(np.float32).reshape(-1))
    arrays: dict[str, pa.Array] = {}
    for name in schema.columns:
        values = cols[name]
        if name.startswith("all_") and not keep_all:
            continue
        field = schema.schema.field(name)
        if pa.types.is_fixed_size_list(field.type):
            size = field.type.list_size
            flat = (pa.array(values, pa.string()) if pa.types.is_string(field.type.value_type)
                    else pa.array(np.concatenate(values), field.type.value_type))
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, size)
        elif values and isinstance(values[0], np.ndarray):
            arrays[name] = pa.array(np.concatenate(values), field.type)
        else:
            arrays[name] = pa.array(values, field.type)
    return schema.conform(pa.table(arrays))


def image_table(images: Sequence[EmbeddedImage]) -> pa.Table:
    """``image_embeddings`` rows (float16) of the images that carry an image embedding."""
    schema = get_schema(IMAGE_EMBEDDINGS)
    rows = [i for i in images if i.result.image_embedding is not None]
    if not rows:
        return schema.arrow.empty_table()
    embeddings = [i.result.image_embedding for i in rows]
    flat = pa.array(np.concatenate([e.astype(np.float16).reshape(-1) for e in embeddings]),
                    pa.float16())
    offsets = np.concatenate([[0], np.cumsum([e.size for e in embeddings])]).astype(np.int32)
    table = pa.table({
        "image_id": [i.image_id for i in rows],
        "name": [i.name for i in rows],
        "height": pa.array([i.result.masks.shape[1] for i in rows], pa.int32()),
        "width": pa.array([i.result.masks.shape[2] for i in rows], pa.int32()),
        "input_height": pa.array([i.input_hw[0] for i in rows], pa.int32()),
        "input_width": pa.array([i.input_hw[1] for i in rows], pa.int32()),
        "shape": pa.FixedSizeListArray.from_arrays(
            pa.array(np.concatenate([np.array(e.shape, np.int32) for e in embeddings])), 3),
        "embedding": pa.ListArray.from_arrays(pa.array(offsets), flat),
    })
    return schema.conform(table)
