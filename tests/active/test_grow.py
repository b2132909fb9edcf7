"""Seeded region growing on a toy image: five regions in a row, one of them labelled."""

from __future__ import annotations

import numpy as np
import torch

from segloop.active.grow import grow_image, grow_labels, region_adjacency, region_mean_probs

IGNORE = 255
# regions 0..4, each a 2x2 block, side by side: 0 | 1 | 2 | 3 | 4
REGIONS = np.repeat(np.arange(5), 2)[None].repeat(2, 0).astype(np.int32)  # (2, 10)


def _probs(per_region: list[list[float]]) -> torch.Tensor:
    """(C, 2, 10) softmax constant inside each region."""
    p = torch.tensor(per_region, dtype=torch.float32)  # (5, C)
    return p[torch.from_numpy(REGIONS).long()].permute(2, 0, 1)


def _labelled_region_0() -> tuple[np.ndarray, np.ndarray]:
    labels = np.full(REGIONS.shape, IGNORE, np.uint8)
    queried = REGIONS == 0
    labels[queried] = 1
    return labels, queried


SURE_1 = [0.1, 0.9, 0.0]
UNSURE_1 = [0.35, 0.6, 0.05]
SURE_2 = [0.05, 0.05, 0.9]


def test_adjacency_and_region_means() -> None:
    adj = region_adjacency(REGIONS, 5)
    assert adj.tolist() == [[abs(i - j) == 1 for j in range(5)] for i in range(5)]
    mean = region_mean_probs(_probs([SURE_1] * 5), REGIONS, 5)
    np.testing.assert_allclose(mean, np.tile(SURE_1, (5, 1)), rtol=1e-6)


def test_grows_into_sure_neighbours_hop_by_hop() -> None:
    labels, queried = _labelled_region_0()
    probs = _probs([SURE_1, SURE_1, SURE_1, SURE_1, SURE_1])
    one = grow_image(labels, queried, REGIONS, 5, probs, 0.7, 1, IGNORE)
    assert (one[REGIONS <= 1] == 1).all() and (one[REGIONS >= 2] == IGNORE).all()
    three = grow_image(labels, queried, REGIONS, 5, probs, 0.7, 3, IGNORE)
    assert (three[REGIONS <= 3] == 1).all() and (three[REGIONS == 4] == IGNORE).all()


def test_stops_where_the_model_is_unsure_or_disagrees() -> None:
    labels, queried = _labelled_region_0()
    unsure = _probs([SURE_1, UNSURE_1, SURE_1, SURE_1, SURE_1])  # 0.6 < beta 0.7
    out = grow_image(labels, queried, REGIONS, 5, unsure, 0.7, 4, IGNORE)
    assert (out[REGIONS >= 1] == IGNORE).all()  # the unsure region blocks the way
    other = _probs([SURE_1, SURE_2, SURE_1, SURE_1, SURE_1])  # sure, but of class 2
    out = grow_image(labels, queried, REGIONS, 5, other, 0.7, 4, IGNORE)
    assert (out[REGIONS >= 1] == IGNORE).all()
    np.testing.assert_array_equal(out[REGIONS == 0], 1)  # labels themselves never change


def test_grow_labels_counts_added_pixels_and_keeps_unqueried_images() -> None:
    labels, queried = _labelled_region_0()
    stack_l = np.stack([labels, np.full_like(labels, IGNORE)])
    stack_q = np.stack([queried, np.zeros_like(queried)])
    probs = _probs([SURE_1] * 5)
    out, added = grow_labels(stack_l, stack_q, np.stack([REGIONS, REGIONS]), np.array([5, 5]),
                             {0: probs, 1: probs}, 0.7, 1, IGNORE)
    assert added == 4  # region 1 of image 0: 2 x 2 pixels
    assert (out[1] == IGNORE).all()  # nothing queried there: nothing to grow from
