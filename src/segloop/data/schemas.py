"""Every Parquet table segloop writes: one registry of named, versioned Arrow schemas.

Each file carries its table name and schema version in the Arrow schema metadata
(keys :data:`TABLE_KEY` and :data:`VERSION_KEY`), so readers can refuse a file of another
table or one written by a newer segloop.

Adding a table is a few lines: build a ``pa.schema``, wrap it in :class:`TableSchema` and
pass it to :func:`register` below. Changing the columns of a table means bumping its
``version``.

Tables (``!`` = not null):

* ``manifest`` v1: image_id string! (16 hex, sha256 of the bytes), name string!,
  split string!, source string! ("real" | "synthetic"), image_uri string!,
  label_uri string (null = unlabelled), height int32!, width int32!, n_bytes int64!.
* ``label_round`` v1: round int32!, image_id string!, name string!, region_id int32!
  (-1 = whole image), label_uri string! (relative to the round folder),
  labelled_pixels int64!, total_pixels int64!, cost float64!, strategy string!,
  score float64, annotator string!, created_at timestamp[us, UTC]!.
* ``scores`` v1: one row per candidate unit scored by an acquisition strategy in a round:
  round int32!, image_id string!, region_id int32! (-1 = whole image), strategy string!,
  score float64! (higher = more uncertain; -inf = not a candidate), pixels int64!,
  pred_class int16! (dominant predicted class, -1 if unknown).
* ``mask_embeddings`` v1: one row per (image, point prompt) of grid-mode SAM (the embed
  flow): image_id string!, name string! (sample name in its dataset), height int32!,
  width int32! (original image size), point_index int16! (row-major in the grid),
  point_x float32!, point_y float32! (pixels, x right, y down), embedding
  fixed_size_list<float16, 1024>! (the decoder's four mask-token outputs, token-major;
  float32 allowed through :meth:`TableSchema.with_type`), mask_rle string! (COCO compressed
  counts of the best mask at height x width), mask_index int8! (0..2: which multimask
  output is best), predicted_iou float32!, stability_score float32!, bbox_xyxy
  fixed_size_list<int32, 4>! (inclusive pixel extent; zeros if empty), area int64!, and,
  only when all three masks are kept, all_mask_rle fixed_size_list<string, 3>,
  all_predicted_iou and all_stability_score fixed_size_list<float32, 3>.
* ``image_embeddings`` v1: one row per image: image_id string!, name string!, height int32!,
  width int32!, input_height int32!, input_width int32! (the resized, unpadded input; the
  rest of the embedding grid is padding), shape fixed_size_list<int32, 3>! (C, h, w),
  embedding list<float16>! (C*h*w values, C-major).
* ``synthetic_manifest`` v1: the ``manifest`` columns (split "synthetic", source
  "synthetic", image_uri relative to the dataset folder) plus how each image was made:
  label string! (the class it stands for), class_name string! (the name in its prompt),
  class_index int32! (label order in the config), index int32! (per label), template
  string!, prompt string!, negative_prompt string!, seed int64!, steps int32!,
  guidance float32!, scheduler string!, model_id string!, revision string, seconds
  float32! (generation time per image), clip_score float32 (CLIP probability of its own
  label; null without a filter), created_at timestamp[us, UTC]!.
* ``synthetic_rejects`` v1: the same columns for images the CLIP filter kept out (their
  PNGs stay under ``_rejects/``), plus clip_scores list<float32>! (one per label).
* ``pseudolabel_masks`` v1: one row per (target image, SAM mask) scored by a pseudo-label
  method: round int32!, method string!, image_id string!, name string!, point_index int16!
  (the mask's row in ``mask_embeddings``), label string! (the method's best label),
  class_id int16! (its id in the target's classes), confidence float32! (top probability
  or similarity), kept bool!, reason string! ("kept" | "low_confidence" | "nms" | "empty"),
  area int64! (mask pixels).
"""

from __future__ import annotations

import pyarrow as pa

from segloop.data.table_schema import (  # noqa: F401  (re-exported)
    TABLE_KEY,
    TABLES,
    VERSION_KEY,
    TableSchema,
    check_metadata,
    get_schema,
    register,
)

MANIFEST_FILE = "manifest.parquet"
"""The file name of a dataset's manifest table (real, synthetic) in its folder."""

MANIFEST = "manifest"
LABEL_ROUND = "label_round"
SCORES = "scores"
MASK_EMBEDDINGS = "mask_embeddings"
IMAGE_EMBEDDINGS = "image_embeddings"
SYNTHETIC_MANIFEST = "synthetic_manifest"
SYNTHETIC_REJECTS = "synthetic_rejects"
PSEUDOLABEL_MASKS = "pseudolabel_masks"
POOL_MANIFEST = "pool_manifest"
MASK_TOKEN_DIM = 1024


register(
    TableSchema(
        name=MANIFEST,
        version=1,
        description="one row per image of a dataset (real or synthetic) with its label file",
        schema=pa.schema(
            [
                # First 16 hex digits of sha256 of the image bytes.
                pa.field("image_id", pa.string(), nullable=False),
                pa.field("name", pa.string(), nullable=False),
                pa.field("split", pa.string(), nullable=False),
                # "real" | "synthetic"
                pa.field("source", pa.string(), nullable=False),
                pa.field("image_uri", pa.string(), nullable=False),
                # None while the image is unlabelled.
                pa.field("label_uri", pa.string(), nullable=True),
                pa.field("height", pa.int32(), nullable=False),
                pa.field("width", pa.int32(), nullable=False),
                pa.field("n_bytes", pa.int64(), nullable=False),
            ]
        ),
    )
)

register(
    TableSchema(
        name=LABEL_ROUND,
        version=1,
        description="one row per labelled image or region of an active-learning round",
        schema=pa.schema(
            [
                pa.field("round", pa.int32(), nullable=False),
                pa.field("image_id", pa.string(), nullable=False),
                pa.field("name", pa.string(), nullable=False),
                # -1 means the whole image.
                pa.field("region_id", pa.int32(), nullable=False),
                # Relative path inside the round folder.
                pa.field("label_uri", pa.string(), nullable=False),
                pa.field("labelled_pixels", pa.int64(), nullable=False),
                pa.field("total_pixels", pa.int64(), nullable=False),
                pa.field("cost", pa.float64(), nullable=False),
                pa.field("strategy", pa.string(), nullable=False),
                # Acquisition score; None for seeds or random picks.
                pa.field("score", pa.float64(), nullable=True),
                pa.field("annotator", pa.string(), nullable=False),
                pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
            ]
        ),
    )
)

register(
    TableSchema(
        name=SCORES,
        version=2,
        description="one row per candidate unit (image or region) scored in a round",
        schema=pa.schema(
            [
                pa.field("round", pa.int32(), nullable=False),
                pa.field("image_id", pa.string(), nullable=False),
                pa.field("region_id", pa.int32(), nullable=False),
                pa.field("strategy", pa.string(), nullable=False),
                # What the selection ranked by (uncertainty x class weight; typicality for
                # TypiClust; gradient-embedding norm for BADGE; a random draw for random).
                pa.field("score", pa.float64(), nullable=False),
                pa.field("pixels", pa.int64(), nullable=False),
                pa.field("pred_class", pa.int16(), nullable=False),
                # v2: why. The raw acquisition score, the class-balance weight (null: none)
                # and the k-means cluster of the unit's image (-1: no clustering).
                pa.field("uncertainty", pa.float64()),
                pa.field("class_weight", pa.float64()),
                pa.field("cluster", pa.int32()),
            ]
        ),
    )
)

register(
    TableSchema(
        name=MASK_EMBEDDINGS,
        version=1,
        description="one row per (image, point prompt): SAM mask embedding, mask and scores",
        schema=pa.schema(
            [
                pa.field("image_id", pa.string(), nullable=False),
                pa.field("name", pa.string(), nullable=False),
                pa.field("height", pa.int32(), nullable=False),
                pa.field("width", pa.int32(), nullable=False),
                pa.field("point_index", pa.int16(), nullable=False),
                pa.field("point_x", pa.float32(), nullable=False),
                pa.field("point_y", pa.float32(), nullable=False),
                pa.field("embedding", pa.list_(pa.float16(), MASK_TOKEN_DIM), nullable=False),
                pa.field("mask_rle", pa.string(), nullable=False),
                pa.field("mask_index", pa.int8(), nullable=False),
                pa.field("predicted_iou", pa.float32(), nullable=False),
                pa.field("stability_score", pa.float32(), nullable=False),
                pa.field("bbox_xyxy", pa.list_(pa.int32(), 4), nullable=False),
                pa.field("area", pa.int64(), nullable=False),
                pa.field("all_mask_rle", pa.list_(pa.string(), 3), nullable=True),
                pa.field("all_predicted_iou", pa.list_(pa.float32(), 3), nullable=True),
                pa.field("all_stability_score", pa.list_(pa.float32(), 3), nullable=True),
            ]
        ),
    )
)

register(
    TableSchema(
        name=IMAGE_EMBEDDINGS,
        version=1,
        description="one row per image: SAM's image embedding (C x h x w, float16)",
        schema=pa.schema(
            [
                pa.field("image_id", pa.string(), nullable=False),
                pa.field("name", pa.string(), nullable=False),
                pa.field("height", pa.int32(), nullable=False),
                pa.field("width", pa.int32(), nullable=False),
                pa.field("input_height", pa.int32(), nullable=False),
                pa.field("input_width", pa.int32(), nullable=False),
                pa.field("shape", pa.list_(pa.int32(), 3), nullable=False),
                pa.field("embedding", pa.list_(pa.float16()), nullable=False),
            ]
        ),
    )
)

_MANIFEST_FIELDS = list(TABLES[MANIFEST].schema)
_SYNTH_FIELDS = [
    pa.field("label", pa.string(), nullable=False),
    pa.field("class_name", pa.string(), nullable=False),
    pa.field("class_index", pa.int32(), nullable=False),
    pa.field("index", pa.int32(), nullable=False),
    pa.field("template", pa.string(), nullable=False),
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("negative_prompt", pa.string(), nullable=False),
    pa.field("seed", pa.int64(), nullable=False),
    pa.field("steps", pa.int32(), nullable=False),
    pa.field("guidance", pa.float32(), nullable=False),
    pa.field("scheduler", pa.string(), nullable=False),
    pa.field("model_id", pa.string(), nullable=False),
    pa.field("revision", pa.string(), nullable=True),
    pa.field("seconds", pa.float32(), nullable=False),
    pa.field("clip_score", pa.float32(), nullable=True),
    pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
]

register(
    TableSchema(
        name=SYNTHETIC_MANIFEST,
        version=1,
        description="one row per synthetic image in the dataset, with how it was made",
        schema=pa.schema(_MANIFEST_FIELDS + _SYNTH_FIELDS),
    )
)

register(
    TableSchema(
        name=SYNTHETIC_REJECTS,
        version=1,
        description="one row per synthetic image the CLIP filter kept out of the dataset",
        schema=pa.schema(_MANIFEST_FIELDS + _SYNTH_FIELDS
                         + [pa.field("clip_scores", pa.list_(pa.float32()), nullable=False)]),
    )
)

register(
    TableSchema(
        name=PSEUDOLABEL_MASKS,
        version=1,
        description="one row per (target image, SAM mask) scored by a pseudo-label method",
        schema=pa.schema([
            pa.field("round", pa.int32(), nullable=False),
            pa.field("method", pa.string(), nullable=False),
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("name", pa.string(), nullable=False),
            pa.field("point_index", pa.int16(), nullable=False),
            pa.field("label", pa.string(), nullable=False),
            pa.field("class_id", pa.int16(), nullable=False),
            pa.field("confidence", pa.float32(), nullable=False),
            pa.field("kept", pa.bool_(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("area", pa.int64(), nullable=False),
        ]),
    )
)

register(
    TableSchema(
        name=POOL_MANIFEST,
        version=1,
        description="one row per image of a split cached at working resolution for the loop",
        schema=pa.schema([
            # position in the cache (shard = index // shard_size)
            pa.field("index", pa.int32(), nullable=False),
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("name", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("image_uri", pa.string(), nullable=False),
            pa.field("label_uri", pa.string(), nullable=True),
            # original size, then the working size the shards hold
            pa.field("height", pa.int32(), nullable=False),
            pa.field("width", pa.int32(), nullable=False),
            pa.field("work_height", pa.int32(), nullable=False),
            pa.field("work_width", pa.int32(), nullable=False),
            pa.field("has_label", pa.bool_(), nullable=False),
            # sequence or group the image belongs to, where the dataset says (CamVid: its
            # clip); None: unknown
            pa.field("group", pa.string(), nullable=True),
            # regions in the image's region map (region-level pools), else None
            pa.field("num_regions", pa.int32(), nullable=True),
        ]),
    )
)
