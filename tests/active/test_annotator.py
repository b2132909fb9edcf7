from __future__ import annotations

import numpy as np
import pytest

from segloop.active.annotator import annotate_image, annotate_region, annotate_units
from segloop.errors import ConfigError, DataError

IGN = 255
GT = np.array(
    [
        [1, 1, 2, 2],
        [3, 3, 2, IGN],
        [IGN, IGN, 4, 4],
    ],
    dtype=np.uint8,
)
REGIONS = np.array(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 3, 3],
    ],
    dtype=np.int32,
)


def test_exact_copies_inside_and_ignores_outside() -> None:
    mask = REGIONS == 1
    out = annotate_region(GT, mask, "exact", IGN)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[mask], GT[mask])
    assert (out[~mask] == IGN).all()


def test_dominant_majority_ties_and_all_ignore() -> None:
    # region 0 holds {1, 1, 3, 3}: a tie -> smallest id 1
    out = annotate_region(GT, REGIONS == 0, "dominant", IGN)
    assert (out[REGIONS == 0] == 1).all() and (out[REGIONS != 0] == IGN).all()
    # region 1 holds {2, 2, 2, ignore}: ignore pixels do not vote, every pixel gets 2
    out = annotate_region(GT, REGIONS == 1, "dominant", IGN)
    assert (out[REGIONS == 1] == 2).all()
    # region 2 is only ignore pixels -> stays ignore
    assert (annotate_region(GT, REGIONS == 2, "dominant", IGN) == IGN).all()
    assert (annotate_region(GT, np.zeros_like(REGIONS, bool), "dominant", IGN) == IGN).all()


def test_annotate_units_matches_per_region_loop() -> None:
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, (12, 10)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.2] = IGN
    regions = rng.integers(0, 7, gt.shape)
    ids = [0, 3, 4, 6]
    for mode in ("exact", "dominant"):
        got = annotate_units(gt, regions, ids, mode, IGN)
        want = np.full(gt.shape, IGN, np.uint8)
        for k in ids:
            mask = regions == k
            want[mask] = annotate_region(gt, mask, mode, IGN)[mask]
        np.testing.assert_array_equal(got, want)


def test_annotate_units_into_and_whole_image() -> None:
    into = np.full(GT.shape, 9, dtype=np.uint8)
    out = annotate_units(GT, REGIONS, [3], "dominant", IGN, into=into)
    assert (into == 9).all()  # not modified in place
    assert (out[REGIONS == 3] == 4).all() and (out[REGIONS != 3] == 9).all()
    whole = annotate_units(GT, REGIONS, [0, -1], "dominant", IGN)
    np.testing.assert_array_equal(whole, GT)
    assert annotate_units(GT, REGIONS, [], "exact", IGN).tolist() == np.full_like(GT, IGN).tolist()


def test_annotate_image_copies() -> None:
    out = annotate_image(GT, IGN)
    np.testing.assert_array_equal(out, GT)
    out[0, 0] = 0
    assert GT[0, 0] == 1


def test_annotator_errors() -> None:
    with pytest.raises(ConfigError, match="dominant"):
        annotate_region(GT, REGIONS == 0, "polygon", IGN)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="uint8"):
        annotate_image(GT.astype(np.int64), IGN)
    with pytest.raises(DataError, match="region ids"):
        annotate_units(GT, REGIONS, [4], "exact", IGN)
    with pytest.raises(DataError, match="into"):
        annotate_units(GT, REGIONS, [0], "exact", IGN, into=np.zeros((2, 2), np.uint8))
