"""The clusters method's per-image rule on constructed features and maps."""

from __future__ import annotations

import numpy as np

from segloop.data.classes import ClassSpec
from segloop.pseudolabel.cluster_seeds import seed_image, valid_sam_grid
from segloop.pseudolabel.label_mapping import ABSTAIN, LabelMapping

SETTINGS = {"tau": 0.5, "alpha": 0.5, "beta": 0.7, "grow": True, "normalise": False}


def _mapping(background: int | None) -> LabelMapping:
    spec = ClassSpec(classes=["background", "car", "tree"])
    return LabelMapping(("car", "tree"), np.array([1, 2]), background, spec)


def test_valid_sam_grid_crops_the_padding() -> None:
    emb = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    assert valid_sam_grid(emb, (30, 60)).shape == (2, 4, 8)  # landscape: top half
    assert valid_sam_grid(emb, (60, 30)).shape == (2, 8, 4)
    assert valid_sam_grid(emb, (10, 10)).shape == (2, 8, 8)


def test_seeds_come_from_the_maps_and_grow_over_feature_clusters() -> None:
    # features: left half one direction, right half another -> two clusters
    feats = np.zeros((2, 4, 4), np.float32)
    feats[0, :, :2] = 1.0
    feats[1, :, 2:] = 1.0
    coarse = np.zeros((2, 4, 4), np.float32)
    coarse[0, :, :2] = 0.8       # car is sure on the left half: seeds and grows nothing more
    coarse[0, 0, 0] = 0.9
    coarse[1, :, 2:] = 0.45      # tree below alpha on the right: no seed there ...
    coarse[1, 0, 3] = 0.95       # ... except one sure pixel
    seeds, maps = seed_image(feats, coarse, _mapping(None), {**SETTINGS, "beta": 0.4})
    assert (seeds[:, :2] == 1).all()                    # car seeds (> alpha)
    # the right cluster's non-seed pixels average 0.45 > beta 0.4: grown to tree
    assert (seeds[:, 2:] == 2).all()
    np.testing.assert_array_equal(maps, coarse)          # normalise off: maps as given
    strict, _ = seed_image(feats, coarse, _mapping(None), SETTINGS)  # beta 0.7: no growing
    assert strict[0, 3] == 2 and (strict[1:, 2:] == ABSTAIN).all()


def test_background_is_the_cluster_of_lowest_score() -> None:
    feats = np.zeros((2, 4, 4), np.float32)
    feats[0, :, :2] = 1.0
    feats[1, :, 2:] = 1.0
    coarse = np.zeros((2, 4, 4), np.float32)
    coarse[0, :, :2] = 0.9
    seeds, _ = seed_image(feats, coarse, _mapping(0), {**SETTINGS, "grow": False})
    assert (seeds[:, :2] == 1).all() and (seeds[:, 2:] == 0).all()
