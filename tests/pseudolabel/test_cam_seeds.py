"""Seeds from class maps and seeded region growing (Kim 2022, eq. 3.3-3.7), by hand."""

from __future__ import annotations

import numpy as np
import pytest

from segloop.errors import ConfigError, DataError
from segloop.pseudolabel.cam_seeds import grow_seeds, normalise_maps, seeds_from_maps

IGN = 255


def test_normalise_maps_min_max_absent_and_constant() -> None:
    maps = np.array([[[2.0, 4.0, 6.0]], [[1.0, 5.0, 9.0]], [[3.0, 3.0, 3.0]]])
    out = normalise_maps(maps, present=np.array([True, False, True]))
    assert out.dtype == np.float32 and out.shape == (3, 1, 3)
    np.testing.assert_allclose(out[0], [[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(out[1], 0.0)  # absent class
    np.testing.assert_array_equal(out[2], 0.0)  # constant map: no location
    np.testing.assert_allclose(normalise_maps(maps)[1], [[0.0, 0.5, 1.0]])
    with pytest.raises(DataError, match="present"):
        normalise_maps(maps, present=np.array([True, False]))


def _toy_maps() -> np.ndarray:
    # channel 0 -> class 3, channel 1 -> class 7
    return np.array([
        [[0.9, 0.5, 0.2, 0.0], [0.6, 0.1, 0.0, 0.0]],
        [[0.3, 0.7, 0.1, 0.0], [0.2, 0.5, 0.3, 0.1]],
    ])


def test_seeds_alpha_is_strict_and_labels_argmax() -> None:
    # max over channels [[.9, .7, .2, 0], [.6, .5, .3, .1]]; pixel (1, 1) is exactly 0.5
    seeds = seeds_from_maps(_toy_maps(), np.zeros((2, 4), int), np.array([3, 7]), alpha=0.5)
    assert seeds.dtype == np.uint8
    np.testing.assert_array_equal(seeds, [[3, 7, IGN, IGN], [3, IGN, IGN, IGN]])


def test_seeds_background_is_lowest_mean_region() -> None:
    regions = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    # region means of max_c: r0 (.9 + .7 + .6) / 3 = .73, r1 (.2 + 0 + .1) / 3 = .1,
    # r2 (.5 + .3) / 2 = .4 -> r1 is background
    seeds = seeds_from_maps(_toy_maps(), regions, np.array([3, 7]), alpha=0.5, background=0)
    np.testing.assert_array_equal(seeds, [[3, 7, 0, 0], [3, IGN, IGN, 0]])


def test_background_region_keeps_its_foreground_seeds() -> None:
    maps = np.array([[[0.8, 0.0, 0.0], [0.6, 0.6, 0.6]]])
    regions = np.array([[5, 5, 5], [9, 9, 9]])  # means .27 and .6: region 5 is background
    seeds = seeds_from_maps(maps, regions, np.array([1]), alpha=0.5, background=0,
                            ignore_index=IGN)
    np.testing.assert_array_equal(seeds, [[1, 0, 0], [1, 1, 1]])


def test_background_tie_takes_lowest_region_id_and_no_maps() -> None:
    regions = np.array([[4, 4], [2, 2]])
    seeds = seeds_from_maps(np.zeros((0, 2, 2)), regions, np.zeros(0, int), background=0)
    np.testing.assert_array_equal(seeds, [[IGN, IGN], [0, 0]])


def test_seeds_reject_bad_input() -> None:
    with pytest.raises(DataError, match="normalise"):
        seeds_from_maps(_toy_maps() * 2, np.zeros((2, 4), int), np.array([3, 7]))
    with pytest.raises(ConfigError, match="background 3"):
        seeds_from_maps(_toy_maps(), np.zeros((2, 4), int), np.array([3, 7]), background=3)
    with pytest.raises(DataError, match="regions"):
        seeds_from_maps(_toy_maps(), np.zeros((2, 3), int), np.array([3, 7]))


def _grow_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    regions = np.array([[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2]])
    seeds = np.array([[2, IGN, IGN, IGN, 0, 1], [IGN, IGN, IGN, IGN, 1, 0]], np.uint8)
    probs = np.zeros((3, 2, 6))
    # region 0: seed (0, 0) says class 2; the non-seed pixels' class-1 mean is
    # (.9 + .6 + .63) / 3 = .71 > .7 (with the seed pixel's 0 it would be .53)
    probs[:, 0, 0] = [0.1, 0.0, 0.9]
    probs[:, 0, 1] = [0.1, 0.9, 0.0]
    probs[:, 1, 0] = [0.4, 0.6, 0.0]
    probs[:, 1, 1] = [0.37, 0.63, 0.0]
    # region 1: no seeds, class-0 mean .69, just under .7
    probs[:, :, 2:4] = np.array([0.69, 0.31, 0.0])[:, None, None]
    # region 2: all seeds, confident class 2 everywhere: must not change
    probs[2, :, 4:] = 1.0
    return seeds, regions, probs


def test_grow_seeds_threshold_and_seeds_untouched() -> None:
    seeds, regions, probs = _grow_case()
    before = seeds.copy()
    out = grow_seeds(seeds, regions, probs, beta=0.7)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[2, 1, IGN, IGN, 0, 1], [1, 1, IGN, IGN, 1, 0]])
    np.testing.assert_array_equal(seeds, before)  # input not modified
    # a lower beta lets region 1 grow to class 0 too
    low = grow_seeds(seeds, regions, probs, beta=0.68)
    np.testing.assert_array_equal(low[:, 2:4], 0)
    np.testing.assert_array_equal(low[:, 4:], before[:, 4:])


def test_grow_seeds_rejects_bad_input() -> None:
    seeds, regions, probs = _grow_case()
    with pytest.raises(DataError, match="probs must be"):
        grow_seeds(seeds, regions, probs[:, :, :5])
    with pytest.raises(DataError, match="NaN"):
        grow_seeds(seeds, regions, np.full_like(probs, np.nan))
