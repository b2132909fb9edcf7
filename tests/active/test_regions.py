from __future__ import annotations

import numpy as np
import pytest

from segloop.active import regions as reg
from segloop.errors import ConfigError, DataError


def _blocks_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((32, 40, 3), dtype=np.uint8)
    img[:16, :20] = (200, 30, 30)
    img[:16, 20:] = (30, 200, 30)
    img[16:, :] = (30, 30, 200)
    noise = rng.integers(-10, 10, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def test_slic_deterministic_and_consecutive() -> None:
    img = _blocks_image()
    a = reg.slic_regions(img, n_segments=12)
    b = reg.slic_regions(img.copy(), n_segments=12)
    assert a.dtype == np.int32 and a.shape == img.shape[:2]
    np.testing.assert_array_equal(a, b)
    ids = np.unique(a)
    np.testing.assert_array_equal(ids, np.arange(ids.size))
    assert ids.size > 1


def test_slic_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="uint8"):
        reg.slic_regions(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ConfigError, match="n_segments"):
        reg.slic_regions(np.zeros((4, 4, 3), dtype=np.uint8), n_segments=0)


def test_relabel_consecutive() -> None:
    out, r = reg.relabel_consecutive(np.array([[7, 7, -2], [100, 7, -2]]))
    assert r == 3 and out.dtype == np.int32
    np.testing.assert_array_equal(out, [[1, 1, 0], [2, 1, 0]])


def test_masks_to_regions_best_score_wins_and_holes_split() -> None:
    masks = np.zeros((3, 4, 6), dtype=bool)
    masks[0, :, :3] = True  # left half, low score
    masks[1, 1:3, 1:5] = True  # centre block, high score: wins the overlap
    masks[2, 0, 0] = True  # lowest score: painted first, then overwritten by mask 0
    scores = np.array([0.5, 0.9, 0.1])
    out = reg.masks_to_regions(masks, scores)
    assert out.dtype == np.int32 and out.shape == (4, 6)
    ids = np.unique(out)
    np.testing.assert_array_equal(ids, np.arange(ids.size))
    # mask 2 vanished; regions = rest of mask 0, mask 1, the uncovered piece
    centre = out[1, 1]
    assert (out[masks[1]] == centre).all()
    left_only = masks[0] & ~masks[1]
    assert len(np.unique(out[left_only])) == 1 and out[0, 0] != centre
    # uncovered: (0,3)-(0,4)-(0,5)-(1,5)-(2,5)-(3,5)-(3,4)-(3,3), one 4-connected piece
    uncovered = ~masks.any(axis=0)
    assert len(np.unique(out[uncovered])) == 1
    assert ids.size == 3


def test_masks_to_regions_disconnected_holes_and_no_scores() -> None:
    masks = np.zeros((2, 3, 5), dtype=bool)
    masks[0, :, 2] = True  # a wall splitting the uncovered area in two
    masks[1, :, 2] = True  # same pixels, no scores: the later mask wins
    out = reg.masks_to_regions(masks)
    assert np.unique(out).tolist() == [0, 1, 2]
    assert (out[:, 2] == 0).all()  # mask 0 vanished, mask 1 became id 0
    assert len({int(out[0, 0]), int(out[0, 4])}) == 2
    assert (out[:, :2] == out[0, 0]).all() and (out[:, 3:] == out[0, 4]).all()


def test_masks_to_regions_empty_and_errors() -> None:
    out = reg.masks_to_regions(np.zeros((0, 2, 3), dtype=bool))
    np.testing.assert_array_equal(out, np.zeros((2, 3), dtype=np.int32))
    with pytest.raises(DataError, match="one per mask"):
        reg.masks_to_regions(np.zeros((2, 2, 2), dtype=bool), np.array([1.0]))


def test_region_quality_hand_example() -> None:
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]], dtype=np.uint8)
    regions = np.array([[0, 0, 0, 1], [0, 0, 1, 1]])
    # valid N = 7; O = [[4, 1], [0, 2]] (region 1's third pixel is ignore)
    q = reg.region_quality(regions, gt, ignore_index=255)
    assert q["asa"] == pytest.approx(6 / 7)
    assert q["ue"] == pytest.approx(1 / 7)  # (5 - 4) + (2 - 2)
    assert q["ue_np"] == pytest.approx(2 / 7)  # min(4, 1) + min(1, 4) + 0 + 0
    assert q["num_regions"] == 2 and q["valid_pixels"] == 7


def test_region_quality_perfect_and_errors() -> None:
    gt = np.array([[3, 3, 5], [3, 5, 5]], dtype=np.uint8)
    q = reg.region_quality(gt.astype(np.int32), gt, ignore_index=255)
    assert q["asa"] == 1.0 and q["ue"] == 0.0 and q["ue_np"] == 0.0
    with pytest.raises(DataError, match="no valid pixel"):
        reg.region_quality(gt, np.full_like(gt, 255), ignore_index=255)


def test_boundary_map_marks_both_sides_of_4_neighbour_edges() -> None:
    ids = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    plus = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)  # corners touch diagonally
    np.testing.assert_array_equal(reg.boundary_map(ids), plus)
    valid = np.ones((3, 3), bool)
    valid[0, 1] = False  # the pair (0,1)-(1,1) no longer counts
    out = reg.boundary_map(ids, valid)
    assert not out[0, 1] and out[1, 1] and out[1, 0]
    assert not reg.boundary_map(np.zeros((2, 2), int)).any()


def _split(width: int, cuts: list[int], rows: int = 6) -> np.ndarray:
    """(rows, width) map whose id steps up at each column in ``cuts``."""
    return np.tile(np.searchsorted(cuts, np.arange(width), side="right"), (rows, 1))


def test_boundary_recall_precision_shifted_boundary() -> None:
    gt = _split(10, [5]).astype(np.uint8)  # gt boundary pixels: columns 4 and 5
    # regions cut at 6: boundary columns 5, 6, at most 1 px from a gt boundary pixel
    q = reg.region_quality(_split(10, [6]), gt, ignore_index=255)
    assert q["br"] == 1.0 and q["bp"] == 1.0
    # cut at 9: boundary columns 8, 9, at least 3 px away
    q = reg.region_quality(_split(10, [9]), gt, ignore_index=255)
    assert q["br"] == 0.0 and q["bp"] == 0.0
    # cut at 8: columns 7, 8. Column 5 (gt) and 7 (regions) are 2 apart, within epsilon
    # 2; columns 4 and 8 are 3 apart from the other side's nearest: half of each
    q = reg.region_quality(_split(10, [8]), gt, ignore_index=255)
    assert q["br"] == 0.5 and q["bp"] == 0.5
    q = reg.region_quality(_split(10, [8]), gt, ignore_index=255, epsilon=3)
    assert q["br"] == 1.0 and q["bp"] == 1.0
    # rows 3-5 merged into one region: its boundary is columns 4-5 of rows 0-2 (6 px)
    # plus the row 2/3 edge in columns 5-9 ((2, 5..9) and (3, 5..9), (2, 5) already
    # counted): 15 px. At epsilon 0 the matches are those on gt columns 4-5: rows 0-2
    # of both columns and (3, 5): 7 px, so BR = 7 / 12 and BP = 7 / 15
    half = _split(10, [5])
    half[3:] = 0
    q = reg.region_quality(half, gt, ignore_index=255, epsilon=0)
    assert q["br"] == pytest.approx(7 / 12)
    assert q["bp"] == pytest.approx(7 / 15)


def test_boundary_metrics_skip_ignore_pixels() -> None:
    gt = _split(12, [5]).astype(np.uint8)
    gt[:, 10:] = 255  # classes 0 | 1 | ignore at columns 0-4 | 5-9 | 10-11
    regions = _split(12, [5, 11])  # boundaries at columns 4, 5 and 10, 11 (inside ignore)
    q = reg.region_quality(regions, gt, ignore_index=255)
    # the 1/ignore frontier (column 9) is no gt boundary, else BR would be 12 / 18; the
    # region boundary at columns 10-11 is not counted, else BP would be 12 / 24
    assert q["br"] == 1.0 and q["bp"] == 1.0
    # with no gt boundary at all BR is 1.0 by definition; BP is then 0
    only_ignore_frontier = _split(12, [10]).astype(np.uint8) * 255
    q = reg.region_quality(_split(12, [5]), only_ignore_frontier, ignore_index=255)
    assert q["br"] == 1.0 and q["bp"] == 0.0
    # no region boundary: BP is 1.0 by definition, BR 0
    q = reg.region_quality(np.zeros((6, 12), int), gt, ignore_index=255)
    assert q["br"] == 0.0 and q["bp"] == 1.0
    with pytest.raises(ConfigError, match="epsilon"):
        reg.region_quality(regions, gt, ignore_index=255, epsilon=-1)
