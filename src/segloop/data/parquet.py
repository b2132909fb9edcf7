"""The Parquet store: a buffered, atomic table writer and schema-checked readers.

Every file is written through :class:`TableWriter`: rows are validated against the
table's schema (:mod:`segloop.data.schemas`), buffered in memory and flushed as one
row group each time the buffer reaches ``row_group_bytes``, into a hidden temporary
file next to the target (``.<name>.tmp-<uuid>``) that is renamed to the final name on
:meth:`TableWriter.close`. A failed or killed writer therefore never leaves a file at the
final name, and readers skip hidden (``.``) and private (``_``) files.

All URLs go through fsspec (local paths, ``file://``, ``memory://``, ``s3://`` ...).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from segloop.data import temp_files
from segloop.data.fs import to_url, url_to_fs
from segloop.data.schemas import TABLES, TableSchema, check_metadata, get_schema
from segloop.errors import DISK_FULL_ERRNOS, StoreError, disk_full_error

Filters = ds.Expression | Sequence[Any] | None


class TableWriter:
    """Stream rows of one registered table into a Parquet file at ``url``, atomically.

    Use as a context manager; leaving the block normally calls :meth:`close` (flush,
    then rename the temporary file to ``url``, replacing any older file), leaving it with
    an exception calls :meth:`abort` (delete the temporary file; an older file at ``url``
    stays untouched). Row groups hold about ``row_group_bytes`` of in-memory Arrow data
    each; the file is compressed with ``compression`` (zstd by default).
    """

    def __init__(
        self,
        url: str,
        table: str | TableSchema,
        *,
        row_group_bytes: int = 64 * 2**20,
        compression: str = "zstd",
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = str(url)
        self.table: TableSchema = table if isinstance(table, TableSchema) else get_schema(table)
        if row_group_bytes <= 0:
            raise StoreError(f"{self.url}: row_group_bytes must be > 0, got {row_group_bytes}")
        if compression.lower() != "none" and not _codec_available(compression):
            raise StoreError(
                f"{self.url}: compression {compression!r} is not available; use 'zstd', "
                "'snappy', 'gzip', 'lz4', 'brotli' or 'none'"
            )
        self.row_group_bytes = row_group_bytes
        self.compression = compression
        self._fs, self._path = url_to_fs(self.url, **(storage_options or {}))
        parent, base = posixpath.split(self._path.rstrip("/"))
        if not base:
            raise StoreError(f"{self.url}: not a file name; give the URL of a .parquet file")
        self._parent = parent
        self.tmp_path = posixpath.join(parent, temp_files.temp_name(base))
        self._buffer: list[pa.Table] = []
        self._buffered_bytes = 0
        self._rows = 0
        self._fh: Any = None
        self._writer: pq.ParquetWriter | None = None
        self._state = "open"  # "open" | "closed" | "aborted"

    @property
    def rows_written(self) -> int:
        """Rows accepted so far (flushed or still buffered); all of them are in the file
        once :meth:`close` returns."""
        return self._rows

    def write_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Validate and buffer row dicts (column name -> value; missing key = null)."""
        self._check_open()
        if len(rows) == 0:
            return
        self._append(self.table.from_rows(rows, where=self.url))

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        """Validate, cast to the table schema and buffer an Arrow table or batch (a full disk
        while a row group is written: :class:`DataError`, the temporary file removed)."""
        self._check_open()
        self._append(self.table.conform(data, where=self.url))

    def close(self) -> None:
        """Flush the buffer, finish the file and rename it to the final URL."""
        if self._state == "closed":
            return
        self._check_open()
        try:
            if self._buffer:
                self._flush(final=True)
            self._open_writer().close()  # with no rows: still a valid, empty file
            _fsync(self._fh)
            self._fh.close()
            self._fs.mv(self.tmp_path, self._path)
        except BaseException as err:
            self.abort()
            if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
                raise disk_full_error(self.url, err) from err
            raise
        self._state = "closed"

    def abort(self) -> None:
        """Drop everything written so far; the final URL is left as it was."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._buffer, self._buffered_bytes = [], 0
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        with contextlib.suppress(Exception):
            if self._fh is not None:
                self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            if self._fs.exists(self.tmp_path):
                self._fs.rm(self.tmp_path)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreError(
                f"{self.url}: writer for table {self.table.name!r} is {self._state}; "
                "open a new TableWriter to write more"
            )

    def _append(self, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        self._buffer.append(data)
        self._buffered_bytes += data.nbytes
        self._rows += data.num_rows
        while self._buffer and self._buffered_bytes >= self.row_group_bytes:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        """Write one row group: all buffered rows if ``final``, else ~row_group_bytes."""
        writer = self._open_writer()
        data = pa.concat_tables(self._buffer)
        n = data.num_rows
        if not final and data.nbytes > 0:
            n = max(1, min(n, n * self.row_group_bytes // data.nbytes))
        head, rest = data.slice(0, n), data.slice(n)
        try:
            writer.write_table(head, row_group_size=n)
        except OSError as err:
            if err.errno not in DISK_FULL_ERRNOS:
                raise
            self.abort()
            raise disk_full_error(self.url, err) from err
        self._buffer = [rest] if rest.num_rows else []
        self._buffered_bytes = rest.nbytes if rest.num_rows else 0

    def _open_writer(self) -> pq.ParquetWriter:
        if self._writer is not None:
            return self._writer
        try:
            self._fs.makedirs(self._parent, exist_ok=True)
            self._fh = self._fs.open(self.tmp_path, "wb")
            self._writer = pq.ParquetWriter(
                self._fh, self.table.arrow, compression=self.compression,
                use_dictionary=_dictionary_columns(self.table.arrow),
            )
        except (OSError, pa.ArrowException) as exc:
            if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
                raise disk_full_error(self.url, exc) from exc
            raise StoreError(
                f"{self.url}: cannot create {self.tmp_path!r} for table "
                f"{self.table.name!r} ({exc}); check the folder exists and is writable"
            ) from exc
        return self._writer


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding: all but lists of floats (embeddings), whose values
    are nearly all distinct. Plain-encoded, float16 embeddings decode ~3.5x faster and the
    files come out slightly smaller."""
    out = []
    for f in schema:
        if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type):
            if not pa.types.is_floating(f.type.value_type):
                out.append(f"{f.name}.list.element")  # leaf path of a list column
        else:
            out.append(f.name)
    return out


def _codec_available(name: str) -> bool:
    try:
        return pa.Codec.is_available(name)
    except ValueError:
        return False


def _fsync(fh: Any) -> None:
    """Make the bytes durable before the rename (local files only)."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        fh.flush()
        os.fsync(fh.fileno())


def write_table(
    url: str,
    table: str | TableSchema,
    data: pa.Table | pa.RecordBatch | Sequence[Mapping[str, Any]],
    **kw: Any,
) -> None:
    """Write ``data`` (Arrow data or row dicts) as table ``table`` at ``url`` in one go.

    ``kw`` goes to :class:`TableWriter` (row_group_bytes, compression, storage_options).
    """
    with TableWriter(url, table, **kw) as writer:
        if isinstance(data, pa.Table | pa.RecordBatch):
            writer.write(data)
        else:
            writer.write_rows(data)


def read_table(
    url: str,
    table: str | TableSchema | None = None,
    *,
    columns: Sequence[str] | None = None,
    filters: Filters = None,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Read a table file, or every ``*.parquet`` file under a directory, as one Arrow table.

    Args:
        url: a file, or a directory (searched recursively; hive partition folders such as
            ``source=real/shard=00000/`` become columns, typed as in the table schema or
            else as strings). Files or folders starting with ``.`` or ``_`` are skipped.
        table: expected table name (or a :class:`TableSchema`, e.g. one made by
            :meth:`TableSchema.with_type`); None takes it from the first file's metadata.
        columns: projection; only these columns are read from disk.
        filters: a ``pyarrow.dataset`` expression or DNF tuples, e.g.
            ``[("split", "=", "train")]``; row groups are pruned by their statistics.

    Every file must carry the segloop metadata of the same table with a schema version
    this code knows; otherwise :class:`StoreError` says which file and how to fix it.
    """
    fs, path = url_to_fs(str(url), **(storage_options or {}))
    files, base = _list_files(fs, path, str(url))
    if table is not None:
        expected = table if isinstance(table, TableSchema) else get_schema(table)
    elif files:
        expected = _peek_table(fs, files[0])
    else:
        raise StoreError(f"{url}: no .parquet files found; pass table= to get an empty table")
    partitioning, part_fields = _hive_partitioning(files, base, expected)
    schema = pa.schema(list(expected.schema) + part_fields, metadata=expected.arrow.metadata)
    if isinstance(columns, str):
        raise StoreError(f"{url}: columns must be a list of names, got the string {columns!r}")
    unknown = [c for c in columns or [] if c not in schema.names]
    if unknown:
        raise StoreError(
            f"{url}: table {expected.name!r} has no column {unknown[0]!r}; "
            f"available columns: {schema.names}"
        )
    if not files:
        empty = schema.empty_table()
        return empty.select(list(columns)) if columns is not None else empty
    try:
        dataset = ds.dataset(
            files,
            schema=schema,
            format="parquet",
            filesystem=fs,
            partitioning=partitioning,
            partition_base_dir=base,
        )
        for fragment in dataset.get_fragments():
            check_metadata(fragment.physical_schema.metadata, to_url(fs, fragment.path), expected)
        expr = _to_expression(filters)
        result = dataset.to_table(
            columns=list(columns) if columns is not None else None, filter=expr
        )
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise StoreError(
            f"{url}: cannot read table {expected.name!r} ({exc}); check the filters and "
            f"columns (available: {schema.names}) and that the files are segloop tables"
        ) from exc
    return result.replace_schema_metadata(expected.arrow.metadata)


def read_metadata(
    url: str, *, storage_options: dict[str, Any] | None = None
) -> tuple[str, int, int]:
    """(table name, schema version, number of rows) of a file or directory, from footers only.

    For a directory the rows are summed and the highest schema version is returned.
    """
    fs, path = url_to_fs(str(url), **(storage_options or {}))
    files, _ = _list_files(fs, path, str(url))
    if not files:
        raise StoreError(f"{url}: no .parquet files found; write the table first")
    names: set[str] = set()
    version, rows = 0, 0
    for file in files:
        meta = _footer(fs, file)
        name, file_version = check_metadata(meta.metadata, to_url(fs, file), None)
        names.add(name)
        version, rows = max(version, file_version), rows + meta.num_rows
    if len(names) > 1:
        raise StoreError(f"{url}: mixes tables {sorted(names)}; keep one table per folder")
    return names.pop(), version, rows


def _list_files(fs: AbstractFileSystem, path: str, url: str) -> tuple[list[str], str | None]:
    """The file itself, or the visible ``*.parquet`` files under a directory (sorted)."""
    if not fs.exists(path):
        raise StoreError(f"{url}: no such file or directory; check the URL or write it first")
    if not fs.isdir(path):
        return [path], None
    base = path.rstrip("/")
    files = []
    for file in sorted(fs.find(base)):
        rel = file[len(base) :].lstrip("/") if file.startswith(base) else file
        parts = rel.split("/")
        if parts[-1].endswith(".parquet") and not any(p.startswith((".", "_")) for p in parts):
            files.append(file)
    return files, base


def _footer(fs: AbstractFileSystem, file: str) -> pq.FileMetaData:
    try:
        with fs.open(file, "rb") as fh:
            return pq.read_metadata(fh)
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(
            f"{to_url(fs, file)}: not a readable Parquet file ({exc}); delete or rewrite it"
        ) from exc


def _peek_table(fs: AbstractFileSystem, file: str) -> TableSchema:
    name, _ = check_metadata(_footer(fs, file).metadata, to_url(fs, file), None)
    return TABLES[name]


def _hive_partitioning(
    files: list[str], base: str | None, expected: TableSchema
) -> tuple[ds.Partitioning | None, list[pa.Field]]:
    """Hive partitioning of ``files`` under ``base`` and the partition fields not in the
    table schema (typed as strings)."""
    if base is None:
        return None, []
    keys: list[str] = []
    for file in files:
        for part in file[len(base) :].strip("/").split("/")[:-1]:
            key = part.partition("=")[0]
            if "=" in part and key not in keys:
                keys.append(key)
    if not keys:
        return None, []
    fields = [
        expected.schema.field(k) if k in expected.schema.names else pa.field(k, pa.string())
        for k in keys
    ]
    extra = [f for f in fields if f.name not in expected.schema.names]
    return ds.partitioning(pa.schema(fields), flavor="hive"), extra


def _to_expression(filters: Filters) -> ds.Expression | None:
    if filters is None or isinstance(filters, ds.Expression):
        return filters
    return pq.filters_to_expression(filters) if len(filters) else None
