"""The machinery behind :mod:`segloop.data.schemas`: named, versioned Arrow schemas.

:class:`TableSchema` conforms Arrow data to a table's columns (casting without loss,
refusing nulls where a column is not nullable); :func:`register` / :func:`get_schema` keep
the registry that :mod:`segloop.data.schemas` fills; :func:`check_metadata` checks the
table name and schema version a file carries. The tables themselves are defined in
:mod:`segloop.data.schemas` only.
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
