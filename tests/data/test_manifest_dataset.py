"""Datasets listed by a manifest table (data.format: manifest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from segloop.data.datasets import open_dataset
from segloop.data.manifest_dataset import ManifestDataset
from segloop.data.parquet import write_table
from segloop.data.schemas import MANIFEST
from segloop.errors import DataError
from segloop.testing import png_bytes, put


def _rows(n: int, split: str = "train", source: str = "real") -> list[dict]:
    return [{"image_id": f"{i:016x}", "name": f"{split}/{i}.png", "split": split,
             "source": source, "image_uri": f"images/{split}_{i}.png",
             "label_uri": None, "height": 4, "width": 5, "n_bytes": 1} for i in range(n)]


def _dataset(tmp_path: Path, rows: list[dict]) -> Path:
    import numpy as np

    folder = tmp_path / "ds"
    for r in rows:
        put(str(folder / r["image_uri"]), png_bytes(np.full((4, 5, 3), 7, np.uint8)))
    write_table(str(folder / "manifest.parquet"), MANIFEST, rows)
    return folder


def test_rows_of_a_split_resolved_relative_to_the_manifest(tmp_path: Path) -> None:
    folder = _dataset(tmp_path, _rows(2) + _rows(3, "val", "synthetic"))
    ds = open_dataset("manifest", str(folder), "val", classes=None)  # type: ignore[arg-type]
    assert isinstance(ds, ManifestDataset) and len(ds) == 3 and ds.sources() == {"synthetic"}
    sample = next(ds.samples())
    assert sample.name == "val/0.png" and sample.image_url.endswith("ds/images/val_0.png")
    assert ds.load(sample).image.shape == (4, 5, 3)
    assert len(ManifestDataset(str(folder / "manifest.parquet"), "")) == 5


def test_unknown_split_lists_the_splits(tmp_path: Path) -> None:
    folder = _dataset(tmp_path, _rows(2))
    with pytest.raises(DataError, match=r"no rows for split 'test' \(splits: \['train'\]\)"):
        list(ManifestDataset(str(folder), "test").samples())


def test_missing_manifest_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="manifest.parquet does not exist"):
        ManifestDataset(str(tmp_path))
    rows = _rows(2)
    rows[1]["name"] = rows[0]["name"]
    folder = _dataset(tmp_path, rows)
    with pytest.raises(DataError, match="appears twice"):
        list(ManifestDataset(str(folder)).samples())


@pytest.mark.parametrize("uri", ["/etc/hostname", "../../secret.png", "images/../../x.png",
                                 "https://example.com/a.png", "s3://bucket/a.png",
                                 "C:/Windows/a.png"])
def test_rows_pointing_outside_the_folder_are_refused_unless_trusted(tmp_path: Path,
                                                                    uri: str) -> None:
    rows = _rows(2)
    folder = _dataset(tmp_path, rows)
    rows[1]["image_uri"] = uri
    write_table(str(folder / "manifest.parquet"), MANIFEST, rows)
    with pytest.raises(DataError, match=r"row 'train/1.png' points at .*manifest_external"):
        list(ManifestDataset(str(folder)).samples())
    urls = [s.image_url for s in ManifestDataset(str(folder), external=True).samples()]
    assert len(urls) == 2  # trusted: taken as given (relative ones joined to the folder)
