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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from segloop.errors import StoreError

TABLE_KEY = b"segloop.table"
VERSION_KEY = b"segloop.schema_version"

MANIFEST = "manifest"
LABEL_ROUND = "label_round"
SCORES = "scores"
MASK_EMBEDDINGS = "mask_embeddings"
IMAGE_EMBEDDINGS = "image_embeddings"
SYNTHETIC_MANIFEST = "synthetic_manifest"
SYNTHETIC_REJECTS = "synthetic_rejects"
PSEUDOLABEL_MASKS = "pseudolabel_masks"
MASK_TOKEN_DIM = 1024


@dataclass(frozen=True)
class TableSchema:
    """A named, versioned table schema.

    Attributes:
        name: registry key, stored in every file's metadata under ``segloop.table``.
        version: schema version, stored as a decimal string under ``segloop.schema_version``.
        schema: the Arrow schema without segloop metadata (column order is the file order).
        description: one line on what a row is.
    """

    name: str
    version: int
    schema: pa.Schema
    description: str

    @property
    def arrow(self) -> pa.Schema:
        """The schema with the table name and version attached as metadata."""
        return self.schema.with_metadata(
            {TABLE_KEY: self.name.encode(), VERSION_KEY: str(self.version).encode()}
        )

    def with_type(self, column: str, type: pa.DataType) -> TableSchema:
        """The same table (name, version) with ``column`` stored as ``type``.

        For physical variants a table allows, e.g. float32 instead of float16 embeddings.
        """
        index = self.schema.get_field_index(column)
        if index < 0:
            raise StoreError(f"table {self.name!r} has no column {column!r}")
        field = self.schema.field(index).with_type(type)
        return TableSchema(self.name, self.version, self.schema.set(index, field),
                           self.description)

    @property
    def columns(self) -> list[str]:
        """Column names in file order."""
        return list(self.schema.names)

    def conform(self, data: pa.Table | pa.RecordBatch, *, where: str = "") -> pa.Table:
        """Validate ``data`` against this schema and return it cast to :attr:`arrow`.

        Columns are reordered to the schema order. Nullable columns may be omitted (they
        are written as nulls); every other missing column, an unknown column, a value of
        the wrong kind (e.g. strings or floats for an int32 column), a value out of range,
        or a null in a non-null column raises :class:`StoreError` naming ``where``, the
        table and the column.
        """
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        if not isinstance(data, pa.Table):
            raise StoreError(
                f"{self._at(where)}expected a pyarrow Table or RecordBatch, got "
                f"{type(data).__name__}; use write_rows() for a list of dicts"
            )
        self._check_names(data.column_names, where)
        arrays = []
        for field in self.schema:
            if field.name in data.column_names:
                column = self._cast(data.column(field.name), field, where)
            else:
                column = pa.nulls(data.num_rows, field.type)
            self._check_nulls(column, field, where)
            arrays.append(column)
        return pa.Table.from_arrays(arrays, schema=self.arrow)

    def from_rows(self, rows: Sequence[Mapping[str, Any]], *, where: str = "") -> pa.Table:
        """Build a conformed table from row dicts (see :meth:`conform` for the checks).

        A key missing from a row means null for that column.
        """
        names = {key for row in rows for key in row}
        self._check_names(names, where)
        columns: dict[str, pa.Array] = {}
        for name in self.schema.names:
            if name not in names:
                continue
            values = [row.get(name) for row in rows]
            try:
                columns[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                raise StoreError(
                    f"{self._at(where)}table {self.name!r} column {name!r}: values cannot be "
                    f"converted ({exc}); give every row a "
                    f"{self.schema.field(name).type} value"
                ) from exc
        return self.conform(pa.table(columns), where=where)

    def _at(self, where: str) -> str:
        return f"{where}: " if where else ""

    def _check_names(self, names: Any, where: str) -> None:
        unknown = sorted(set(names) - set(self.schema.names))
        if unknown:
            raise StoreError(
                f"{self._at(where)}table {self.name!r} has no column(s) {unknown}; "
                f"remove them or fix their names (columns: {self.columns})"
            )
        missing = [f.name for f in self.schema if not f.nullable and f.name not in names]
        if missing:
            raise StoreError(
                f"{self._at(where)}table {self.name!r} is missing required column "
                f"{missing[0]!r} (all missing: {missing}); add it to every row"
            )

    def _cast(self, column: pa.ChunkedArray, field: pa.Field, where: str) -> pa.ChunkedArray:
        if column.type == field.type:
            return column
        if not _compatible(column.type, field.type):
            raise StoreError(
                f"{self._at(where)}table {self.name!r} column {field.name!r} must be "
                f"{field.type}, got {column.type}; convert the values before writing"
            )
        try:
            return column.cast(field.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise StoreError(
                f"{self._at(where)}table {self.name!r} column {field.name!r}: cannot cast "
                f"{column.type} to {field.type} without loss ({exc}); fix the values"
            ) from exc

    def _check_nulls(self, column: pa.ChunkedArray, field: pa.Field, where: str) -> None:
        if field.nullable or column.null_count == 0:
            return
        first = pc.index(column.is_null(), True).as_py()
        raise StoreError(
            f"{self._at(where)}table {self.name!r} column {field.name!r} is not nullable "
            f"but has {column.null_count} null(s) (first at row {first}); fill them in"
        )


def _compatible(src: pa.DataType, dst: pa.DataType) -> bool:
    """Whether ``src`` values may be cast to ``dst`` (same kind; range checked by the cast)."""
    t = pa.types
    if t.is_dictionary(src):
        src = src.value_type
    if src == dst or t.is_null(src):
        return True
    if t.is_integer(dst):
        return t.is_integer(src)
    if t.is_floating(dst):
        return t.is_integer(src) or t.is_floating(src)
    if t.is_string(dst) or t.is_large_string(dst):
        return t.is_string(src) or t.is_large_string(src)
    if t.is_timestamp(dst):
        return t.is_timestamp(src)
    if t.is_fixed_size_list(dst) or t.is_list(dst) or t.is_large_list(dst):
        is_list = t.is_fixed_size_list(src) or t.is_list(src) or t.is_large_list(src)
        return is_list and _compatible(src.value_type, dst.value_type)
    return False


TABLES: dict[str, TableSchema] = {}


def register(table: TableSchema) -> TableSchema:
    """Add ``table`` to :data:`TABLES` (names are unique) and return it."""
    if table.name in TABLES:
        raise StoreError(f"table {table.name!r} is already registered; pick another name")
    TABLES[table.name] = table
    return table


def get_schema(name: str) -> TableSchema:
    """The registered schema called ``name``; unknown names raise :class:`StoreError`."""
    try:
        return TABLES[name]
    except KeyError:
        raise StoreError(
            f"unknown table {name!r}; known tables: {sorted(TABLES)} "
            "(register new ones in segloop/data/schemas.py)"
        ) from None


def check_metadata(
    meta: Mapping[bytes, bytes] | None, url: str, expected: TableSchema | None = None
) -> tuple[str, int]:
    """Check a file's Arrow schema metadata; return its (table name, schema version).

    Raises :class:`StoreError` (naming ``url``) when the metadata is missing, names another
    table than ``expected``, or carries a schema version newer than this code knows.
    Older versions pass: readers cast them to the current schema.
    """
    meta = meta or {}
    if TABLE_KEY not in meta or VERSION_KEY not in meta:
        raise StoreError(
            f"{url}: not a segloop table (no {TABLE_KEY.decode()!r} metadata); write it "
            "with segloop.data.parquet.TableWriter or move it out of the folder"
        )
    name = meta[TABLE_KEY].decode()
    try:
        version = int(meta[VERSION_KEY])
    except ValueError:
        raise StoreError(f"{url}: bad schema version {meta[VERSION_KEY]!r}; rewrite it") from None
    if expected is not None and name != expected.name:
        raise StoreError(
            f"{url}: holds table {name!r}, not {expected.name!r}; read it with "
            f"table={name!r} or point at the {expected.name!r} files"
        )
    known = TABLES.get(name)
    if known is None or version > known.version:
        knows = "does not know it" if known is None else f"knows up to v{known.version}"
        raise StoreError(
            f"{url}: table {name!r} has schema version {version} but this segloop {knows}; "
            "upgrade segloop (pip install -U segloop) to read it"
        )
    return name, version


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
        version=1,
        description="one row per candidate unit (image or region) scored in a round",
        schema=pa.schema(
            [
                pa.field("round", pa.int32(), nullable=False),
                pa.field("image_id", pa.string(), nullable=False),
                pa.field("region_id", pa.int32(), nullable=False),
                pa.field("strategy", pa.string(), nullable=False),
                pa.field("score", pa.float64(), nullable=False),
                pa.field("pixels", pa.int64(), nullable=False),
                pa.field("pred_class", pa.int16(), nullable=False),
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
