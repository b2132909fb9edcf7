"""Balanced seed loss (Kim 2022, eq. 3.8) against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segloop.errors import ConfigError, DataError
from segloop.train.seed_loss import balanced_seed_loss

IGN = 255
LN2 = math.log(2.0)
LN43 = math.log(4.0 / 3.0)


def _logits() -> torch.Tensor:
    # (1, 2, 2, 2): pixel logits (class 0, class 1)
    #   (0, 0) -> (0, 0)     (0, 1) -> (ln 3, 0)
    #   (1, 0) -> (0, 0)     (1, 1) -> (0, ln 3)
    # CE: a (0, 0) pixel costs ln 2 for either label; a pixel whose label has logit ln 3
    # against 0 costs -log(3 / 4) = ln(4/3).
    lg = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    lg[0, 0, 0, 1] = math.log(3.0)
    lg[0, 1, 1, 1] = math.log(3.0)
    return lg.requires_grad_(True)


def test_balanced_by_hand_three_background_one_foreground() -> None:
    seeds = torch.tensor([[[0, 0], [0, 1]]])
    loss = balanced_seed_loss(_logits(), seeds, background=0)
    # background mean (ln2 + ln(4/3) + ln2) / 3 plus the lone foreground pixel ln(4/3):
    # that one pixel weighs as much as the three background pixels together
    assert loss.item() == pytest.approx((2 * LN2 + LN43) / 3 + LN43)
    plain = balanced_seed_loss(_logits(), seeds, background=None)
    assert plain.item() == pytest.approx((2 * LN2 + 2 * LN43) / 4)


def test_ignore_pixels_add_nothing_and_empty_terms_are_zero() -> None:
    seeds = torch.tensor([[[0, IGN], [0, 1]]])
    assert balanced_seed_loss(_logits(), seeds, 0).item() == pytest.approx(LN2 + LN43)
    only_bg = torch.tensor([[[0, IGN], [IGN, IGN]]])
    assert balanced_seed_loss(_logits(), only_bg, 0).item() == pytest.approx(LN2)
    none = torch.full((1, 2, 2), IGN)
    lg = _logits()
    loss = balanced_seed_loss(lg, none, 0)
    assert loss.item() == 0.0
    loss.backward()
    assert lg.grad is not None and (lg.grad == 0).all()


def test_background_none_is_mean_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=g)
    seeds = torch.randint(0, 3, (2, 4, 5), generator=g)
    seeds[0, :2] = IGN
    want = F.cross_entropy(logits, seeds, ignore_index=IGN)
    got = balanced_seed_loss(logits, seeds, background=None, ignore_index=IGN)
    torch.testing.assert_close(got, want)


def test_gradient_flows_to_labelled_pixels_only() -> None:
    lg = _logits()
    seeds = torch.tensor([[[0, IGN], [0, 1]]])
    balanced_seed_loss(lg, seeds, background=0).backward()
    assert lg.grad is not None
    per_pixel = lg.grad.abs().sum(dim=1)[0]
    assert per_pixel[0, 1] == 0 and (per_pixel[[0, 1, 1], [0, 0, 1]] > 0).all()
    # d/dlogit of CE at the foreground pixel (weight 1): softmax - onehot = (.25, -.25)
    torch.testing.assert_close(lg.grad[0, :, 1, 1],
                               torch.tensor([0.25, -0.25], dtype=torch.float64))


def test_bad_labels_and_background() -> None:
    with pytest.raises(DataError, match="outside 0..1"):
        balanced_seed_loss(_logits(), torch.tensor([[[0, 2], [0, 1]]]), 0)
    with pytest.raises(ConfigError, match="background"):
        balanced_seed_loss(_logits(), torch.tensor([[[0, 0], [0, 1]]]), 5)
    with pytest.raises(DataError, match="seeds must be"):
        balanced_seed_loss(_logits(), torch.zeros(1, 2, 3, dtype=torch.long), 0)
