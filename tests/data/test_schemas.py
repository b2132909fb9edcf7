"""Tests of the table registry and schema validation."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from segloop.data import schemas
from segloop.data.schemas import (
    LABEL_ROUND,
    MANIFEST,
    TABLE_KEY,
    TABLES,
    VERSION_KEY,
    TableSchema,
    check_metadata,
    get_schema,
    register,
)
from segloop.errors import StoreError

MANIFEST_COLUMNS = [
    ("image_id", pa.string(), False),
    ("name", pa.string(), False),
    ("split", pa.string(), False),
    ("source", pa.string(), False),
    ("image_uri", pa.string(), False),
    ("label_uri", pa.string(), True),
    ("height", pa.int32(), False),
    ("width", pa.int32(), False),
    ("n_bytes", pa.int64(), False),
]
LABEL_ROUND_COLUMNS = [
    ("round", pa.int32(), False),
    ("image_id", pa.string(), False),
    ("name", pa.string(), False),
    ("region_id", pa.int32(), False),
    ("label_uri", pa.string(), False),
    ("labelled_pixels", pa.int64(), False),
    ("total_pixels", pa.int64(), False),
    ("cost", pa.float64(), False),
    ("strategy", pa.string(), False),
    ("score", pa.float64(), True),
    ("annotator", pa.string(), False),
    ("created_at", pa.timestamp("us", tz="UTC"), False),
]


def label_row(**change: object) -> dict:
    row = {
        "round": 0,
        "image_id": "0123456789abcdef",
        "name": "a",
        "region_id": -1,
        "label_uri": "masks/a.png",
        "labelled_pixels": 10,
        "total_pixels": 100,
        "cost": 1.0,
        "strategy": "random",
        "score": None,
        "annotator": "bob",
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
    }
    row.update(change)
    return row


@pytest.mark.parametrize(
    "name, columns", [(MANIFEST, MANIFEST_COLUMNS), (LABEL_ROUND, LABEL_ROUND_COLUMNS)]
)
def test_registered_tables_match_the_contract(name: str, columns: list) -> None:
    table = get_schema(name)
    assert table is TABLES[name] and table.name == name and table.version == 1
    assert [(f.name, f.type, f.nullable) for f in table.schema] == columns
    assert table.columns == [c[0] for c in columns]
    assert table.arrow.metadata == {TABLE_KEY: name.encode(), VERSION_KEY: b"1"}
    assert table.schema.metadata is None and table.description


def test_get_schema_unknown_lists_known_tables() -> None:
    with pytest.raises(StoreError, match=r"unknown table 'mask'.*'label_round', 'manifest'"):
        get_schema("mask")


def test_register_a_new_table_and_refuse_duplicates() -> None:
    extra = TableSchema("scores_test", 2, pa.schema([("x", pa.float32())]), "test only")
    try:
        assert register(extra) is extra and get_schema("scores_test") is extra
        with pytest.raises(StoreError, match="already registered"):
            register(extra)
    finally:
        schemas.TABLES.pop("scores_test", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        extra.version = 3  # type: ignore[misc]


def test_from_rows_converts_and_fills_optional_columns() -> None:
    table = get_schema(LABEL_ROUND)
    row = label_row(created_at=datetime(2024, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))))
    del row["score"]  # nullable: may be left out
    got = table.from_rows([row, label_row(score=0.5, cost=2)])
    assert got.schema.equals(table.arrow, check_metadata=True)
    assert got.column("score").to_pylist() == [None, 0.5]
    assert got.column("cost").to_pylist() == [1.0, 2.0]  # int accepted for float64
    assert got.column("created_at")[0].as_py() == datetime(2024, 1, 1, tzinfo=UTC)


def test_conform_reorders_and_casts_safely() -> None:
    table = get_schema(LABEL_ROUND)
    data = pa.Table.from_pylist([label_row()])  # int64 ints, columns in row order
    data = data.select(list(reversed(data.column_names)))
    got = table.conform(data)
    assert got.column_names == table.columns and got.schema.field("round").type == pa.int32()
    overflow = data.set_column(data.column_names.index("round"), "round", pa.array([2**31]))
    with pytest.raises(StoreError, match="'round': cannot cast int64 to int32"):
        table.conform(overflow, where="x.parquet")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"cost": "cheap"}, "column 'cost'"),
        ({"region_id": 0.5}, "'region_id' must be int32, got double"),
        ({"annotator": None}, "'annotator' is not nullable"),
        ({"created_at": "2024-01-01"}, "column 'created_at'"),
        ({"extra": 1}, r"no column\(s\) \['extra'\]"),
    ],
)
def test_bad_values_name_table_column_and_where(change: dict, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        get_schema(LABEL_ROUND).from_rows([label_row(), label_row(**change)], where="r.parquet")
    assert str(info.value).startswith("r.parquet: ") and "'label_round'" in str(info.value)


def test_missing_required_column() -> None:
    row = label_row()
    del row["strategy"]
    with pytest.raises(StoreError, match="missing required column 'strategy'"):
        get_schema(LABEL_ROUND).from_rows([row])
    with pytest.raises(StoreError, match="write_rows"):
        get_schema(LABEL_ROUND).conform([row])  # type: ignore[arg-type]


def test_check_metadata() -> None:
    manifest = get_schema(MANIFEST)
    assert check_metadata(manifest.arrow.metadata, "f", manifest) == (MANIFEST, 1)
    with pytest.raises(StoreError, match="f: holds table 'manifest', not 'label_round'"):
        check_metadata(manifest.arrow.metadata, "f", get_schema(LABEL_ROUND))
    with pytest.raises(StoreError, match="version 2 .* knows up to v1; upgrade segloop"):
        check_metadata({TABLE_KEY: b"manifest", VERSION_KEY: b"2"}, "f")
    with pytest.raises(StoreError, match="not a segloop table"):
        check_metadata(None, "f")
