"""Soft per-label score maps of seed rounds: how each method makes them and how they are
stored (compact, atomic, clear errors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segloop.errors import DataError
from segloop.pseudolabel import store
from segloop.pseudolabel.image_label import soft_maps
from segloop.pseudolabel.mask_label import mask_soft_maps


def test_soft_maps_normalise_winning_labels_and_zero_the_others() -> None:
    scores = np.array([[[0.2, 0.6, 0.4]],    # label 0 wins pixels 1 and 2
                       [[0.5, 0.1, 0.3]],    # label 1 wins pixel 0
                       [[0.1, 0.2, 0.0]]],   # label 2 wins nothing -> 0
                      np.float32)
    out = soft_maps(scores)
    np.testing.assert_allclose(out[0, 0], [0.0, 1.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(out[1, 0], [1.0, 0.0, 0.5], atol=1e-6)
    assert not out[2].any()


def test_mask_soft_maps_take_the_best_confidence_per_label() -> None:
    masks = np.zeros((3, 1, 3), bool)
    masks[0, 0, :2] = True   # label 0, conf 0.6
    masks[1, 0, 1:] = True   # label 0, conf 0.9
    masks[2, 0, 2] = True    # label 1, conf 0.7
    out = mask_soft_maps(masks, np.array([0, 0, 1]), np.array([0.6, 0.9, 0.7]), 2)
    np.testing.assert_allclose(out[0, 0], [0.6, 0.9, 0.9])
    np.testing.assert_allclose(out[1, 0], [0.0, 0.0, 0.7])


def test_scores_are_compacted_and_read_back(tmp_path: Path) -> None:
    big = np.zeros((2, 300, 200), np.float32)
    big[0, :150] = 1.0
    store.write_scores(tmp_path, "img", big)
    back = store.read_scores(tmp_path, "img")
    assert back.shape == (2, 100, 67) and back.dtype == np.float32  # factor 3, aspect kept
    assert back[0, :50].min() == 1.0 and back[0, 50:].max() == 0.0
    assert not list((tmp_path / store.SCORES_DIR).glob(".*"))  # no temporary left
    small = np.full((1, 4, 4), 0.25, np.float32)
    assert store.compact_scores(small).shape == (1, 4, 4)  # small maps kept as they are


def test_missing_or_broken_score_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no score maps for image abc"):
        store.read_scores(tmp_path, "abc")
    (tmp_path / store.SCORES_DIR).mkdir()
    (tmp_path / store.SCORES_DIR / "abc.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a score file"):
        store.read_scores(tmp_path, "abc")
