"""Colourised label maps and the side-by-side figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segloop.pseudolabel.figures import (
    BLANK_COLOR,
    LEGEND_LINE,
    LEGEND_PAD,
    MISSING_COLOR,
    colorize,
    side_by_side,
)

COLORS = [(10, 20, 30), (200, 0, 0), (0, 200, 0)]
NAMES = ["bg", "cat", "dog"]


def test_colorize_known_ids() -> None:
    label = np.array([[0, 1, 2], [7, 255, 254]], np.uint8)
    out = colorize(label, COLORS, ignore_index=254)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert out[0].tolist() == [list(c) for c in COLORS]
    assert tuple(out[1, 0]) == MISSING_COLOR == (128, 128, 128)
    assert tuple(out[1, 1]) == (0, 0, 0)  # abstain
    assert tuple(out[1, 2]) == (255, 255, 255)  # ignore
    # ignore wins when it equals the abstain value
    assert tuple(colorize(label, COLORS, ignore_index=255)[1, 1]) == (255, 255, 255)
    with pytest.raises(ValueError, match="integer label map"):
        colorize(label.astype(np.float32), COLORS)


def rows() -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None, str]]:
    """Two 20 x 40 rows: left half cat / right half dog; row 1 has no ground truth."""
    image = np.zeros((20, 40, 3), np.uint8)
    image[:] = (50, 100, 150)
    pred = np.ones((20, 40), np.uint8)
    pred[:, 20:] = 2
    gt = np.zeros((20, 40), np.uint8)
    gt[:, 30:] = 255  # ignore
    return [(image, pred, gt, "first"), (image, pred, None, "second")]


def test_side_by_side_size_and_pixels(tmp_path: Path) -> None:
    path = str(tmp_path / "figs" / "side.png")
    assert side_by_side(rows(), COLORS, path, ignore_index=255, row_height=60,
                        class_names=NAMES) == path
    fig = np.asarray(Image.open(path).convert("RGB"))
    # 20 x 40 scaled to height 60 -> 120 wide; 3 columns; one legend line.
    legend = 2 * LEGEND_PAD + LEGEND_LINE
    assert legend == 26
    assert fig.shape == (2 * 60 + legend, 3 * 120, 3)
    assert tuple(fig[30, 119]) == (50, 100, 150)  # image panel, away from text
    assert tuple(fig[59, 120 + 10]) == COLORS[1]  # pseudo-label, left half: cat
    assert tuple(fig[59, 239]) == COLORS[2]  # right half: dog
    assert tuple(fig[59, 240 + 10]) == COLORS[0]  # ground truth background
    assert tuple(fig[59, 359]) == (255, 255, 255)  # ground truth ignore
    assert tuple(fig[119, 359]) == BLANK_COLOR  # row 1: no ground truth
    assert tuple(fig[60 + 30, 120 + 59]) == COLORS[1]  # nearest: cat up to x = 59
    assert tuple(fig[60 + 30, 120 + 60]) == COLORS[2]
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["side.png"]


def test_side_by_side_legend_wraps_and_default_names(tmp_path: Path) -> None:
    colors = [(i, i, i) for i in range(12)]
    image = np.zeros((10, 10, 3), np.uint8)
    label = np.zeros((10, 10), np.uint8)
    path = side_by_side([(image, label, label, "")], colors, str(tmp_path / "a.png"),
                        row_height=20)
    with Image.open(path) as im:
        w, h = im.size
    assert w == 60
    lines = (h - 20 - 2 * LEGEND_PAD) / LEGEND_LINE
    assert lines == int(lines) and lines > 1


def test_side_by_side_rejects_bad_input(tmp_path: Path) -> None:
    path = str(tmp_path / "bad.png")
    image, pred, gt, _ = rows()[0]
    with pytest.raises(ValueError, match="at least one row"):
        side_by_side([], COLORS, path)
    with pytest.raises(ValueError, match="differ in size"):
        side_by_side([(image, pred[:, :30], gt, "x")], COLORS, path)
    with pytest.raises(ValueError, match="ground truth"):
        side_by_side([(image, pred, gt[:10], "x")], COLORS, path)
    with pytest.raises(ValueError, match="uint8"):
        side_by_side([(image.astype(np.float32), pred, gt, "x")], COLORS, path)
    with pytest.raises(ValueError, match="class names"):
        side_by_side([(image, pred, gt, "x")], COLORS, path, class_names=["a"])
    assert not Path(path).exists()
