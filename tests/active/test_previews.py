"""The per-round selection preview: outlines, frames, tile grid, truncation note, atomic write."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fsspec.implementations.local import LocalFileSystem
from PIL import Image

from segloop.active.pool import Pool
from segloop.active.previews import (
    CAPTION_INCHES,
    DPI,
    OUTLINE,
    TILE_INCHES,
    TITLE_INCHES,
    outline,
    read_clusters,
    selection_preview,
    tile_order,
    write_preview,
    write_round_preview,
)
from segloop.active.scoring import score_row, write_scores
from segloop.active.selection import Budget, Selection, Unit
from segloop.errors import DataError
from segloop.train.arrays import SplitArrays

H, W = 16, 24
GREY = 90


def _region_map() -> np.ndarray:
    """Four 8x12 quadrants: 0 1 / 2 3."""
    rm = np.zeros((H, W), np.int32)
    rm[:8, 12:] = 1
    rm[8:, :12] = 2
    rm[8:, 12:] = 3
    return rm


def _images(n: int) -> dict[int, np.ndarray]:
    """Image i is one colour, (20, 160 + i, 60): no caption text or outline has it."""
    return {i: np.broadcast_to(np.array([20, 160 + i, 60], np.uint8), (H, W, 3)).copy()
            for i in range(n)}


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_outline_colours_exactly_the_boundary_of_picked_regions() -> None:
    image = np.full((H, W, 3), GREY, np.uint8)
    out = outline(image, _region_map(), [1])
    coloured = (out == OUTLINE).all(-1)
    expected = np.zeros((H, W), bool)
    expected[:8, 12:] = True
    expected[1:7, 13:23] = False  # interior of region 1 (top-right quadrant)
    np.testing.assert_array_equal(coloured, expected)
    np.testing.assert_array_equal(out[~expected], image[~expected])  # other regions unchanged
    assert (image == GREY).all()  # the input is not modified


def test_adjacent_picked_regions_keep_their_shared_edge_and_thickness_stays_inside() -> None:
    out = outline(np.zeros((H, W, 3), np.uint8), _region_map(), [0, 1], thickness=2)
    coloured = (out == OUTLINE).all(-1)
    assert coloured[4, 11] and coloured[4, 12] and coloured[4, 10] and coloured[4, 13]
    assert not coloured[4, 9] and not coloured[4, 14]
    assert not coloured[8:].any()  # unpicked regions 2 and 3 untouched


def test_whole_image_frame() -> None:
    out = outline(np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.int32), [0])
    coloured = (out == OUTLINE).all(-1)
    assert coloured[0].all() and coloured[-1].all() and coloured[:, 0].all()
    assert coloured[:, -1].all() and not coloured[1:-1, 1:-1].any()


def test_tiles_best_score_first_and_capped() -> None:
    units = [Unit(0, 1, 10, 0.2), Unit(3, 0, 10, 0.9), Unit(0, 2, 10, 0.95), Unit(2, -1, 5, 0.5)]
    assert tile_order(units, 16) == [0, 3, 2]
    assert tile_order(units, 2) == [0, 3]


@pytest.mark.parametrize(("n", "cols", "rows"), [(3, 3, 1), (6, 4, 2)])
def test_png_is_a_grid_of_the_picked_images(n: int, cols: int, rows: int) -> None:
    units = [Unit(i, -1, H * W, 1.0 - i / 10) for i in range(n)]
    image = _png(selection_preview(_images(n), units, title="round 1 · image level · entropy"))
    tile_h = TILE_INCHES * H / W
    assert image.format == "PNG"
    assert abs(image.width - cols * TILE_INCHES * DPI) <= 1
    assert abs(image.height - (rows * (tile_h + CAPTION_INCHES) + TITLE_INCHES) * DPI) <= 1
    rgb = np.asarray(image.convert("RGB"))
    assert (rgb == OUTLINE).all(-1).sum() > n * 50  # each image has its frame
    assert image.text["Title"] == (f"round 1 · image level · entropy · {n} units in {n} images")


def test_region_outline_is_drawn_and_unpicked_images_are_not_shown() -> None:
    units = [Unit(1, 3, 96, 0.7, pred_class=0)]
    data = selection_preview(_images(2), units, regions={1: _region_map()},
                             class_names=["road", "car"])
    rgb = np.asarray(_png(data).convert("RGB"))
    assert (rgb == OUTLINE).all(-1).sum() > 50
    assert (rgb == (20, 161, 60)).all(-1).any() and not (rgb == (20, 160, 60)).all(-1).any()
    with pytest.raises(ValueError, match="no region map"):
        selection_preview(_images(2), units)


def test_title_says_how_many_are_not_shown() -> None:
    units = [Unit(i, r, 96, float(i + r / 10)) for i in range(5) for r in range(2)]
    regions = {i: _region_map() for i in range(5)}
    image = _png(selection_preview(_images(5), units, regions=regions, max_tiles=3))
    assert image.text["Title"].endswith(
        "10 units in 5 images · 2 images (4 units) not shown, best 3 by score")
    assert abs(image.width - 3 * TILE_INCHES * DPI) <= 1


def test_write_replaces_a_file_only_when_complete(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "preview.png"
    path.write_bytes(b"old")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk gone")

    with monkeypatch.context() as m:
        m.setattr(LocalFileSystem, "mv", boom)
        with pytest.raises(DataError):
            write_preview(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]
    write_preview(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]


def test_write_round_preview_from_a_context(tmp_path: Path) -> None:
    n = 4
    images = torch.stack([torch.from_numpy(im).permute(2, 0, 1) for im in _images(n).values()])
    arrays = SplitArrays(images, None, tuple(f"id{i}" for i in range(n)),
                         tuple(f"n{i}" for i in range(n)), ((H, W),) * n)
    regions = np.stack([_region_map()] * n)
    pool = Pool(arrays, tuple(f"u{i}" for i in range(n)), regions, np.full(n, 4))
    units = (Unit(2, 1, 96, 0.8, 1), Unit(0, 3, 96, 0.6, 0))
    selection = Selection(units, 192, 192.0, 2, Budget(units=2))
    work = tmp_path / "work"
    work.mkdir()
    rows = [{**score_row(2, pool, u, "entropy"), "uncertainty": u.score,
             "class_weight": None, "cluster": 5 if u.image_index == 2 else -1} for u in units]
    write_scores(work / "scores.parquet", rows)
    assert read_clusters(work / "scores.parquet", ["id2", "id0", "id3"]) == {"id2": 5}
    ctx = SimpleNamespace(
        pool=pool, classes=SimpleNamespace(names=("road", "car")),
        cfg=SimpleNamespace(active=SimpleNamespace(level="region", strategy="entropy",
                                                   initial_strategy="random")),
        work_dir=lambda k: work)
    out = write_round_preview(ctx, 2, selection, tmp_path / "r2.png")  # type: ignore[arg-type]
    image = _png(out.read_bytes())
    assert image.text["Title"] == "round 2 · region level · entropy · 2 units in 2 images"
    assert abs(image.width - 2 * TILE_INCHES * DPI) <= 1
