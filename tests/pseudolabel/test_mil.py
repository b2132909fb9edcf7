"""U-SAM losses and rules against values worked out by hand (math.log / math.exp only)."""

from __future__ import annotations

import math

import pytest
import torch

from segloop.pseudolabel.mil import (
    bad_set,
    bag_scores,
    mask_entropy,
    mil_loss,
    normalise_targets,
    student_loss,
    topk_count,
    uncertainty_loss,
)

LN3 = math.log(3.0)

# Two images, d = 3 masks, C = 2 classes; with a = 2, k = ceil(3 / 2) = 2.
MIL_LOGITS = torch.tensor([[[1.0, 4.0], [3.0, 0.0], [2.0, 2.0]],
                           [[0.0, 1.0], [2.0, -1.0], [1.0, 3.0]]])
MIL_TARGETS = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # second row: two labels


def _expected_mil() -> float:
    # image 0: s = (mean(3, 2), mean(4, 2)) = (2.5, 3.0); target class 0.
    ce0 = -(2.5 - math.log(math.exp(2.5) + math.exp(3.0)))
    # image 1: s = (mean(2, 1), mean(3, 1)) = (1.5, 2.0); target (0.5, 0.5).
    lse1 = math.log(math.exp(1.5) + math.exp(2.0))
    ce1 = -0.5 * (1.5 - lse1) - 0.5 * (2.0 - lse1)
    return (ce0 + ce1) / 2


def _entropy(ps: list[float]) -> float:
    return -sum(p * math.log(p) for p in ps)


@pytest.mark.parametrize(("d", "a", "k"), [(100, 10, 10), (5, 10, 1), (101, 10, 11),
                                           (1, 1, 1), (100, 1, 100), (20, 10, 2),
                                           (99, 10, 10), (3, 2, 2)])
def test_topk_count(d: int, a: int, k: int) -> None:
    assert topk_count(d, a) == k


@pytest.mark.parametrize(("d", "a"), [(0, 10), (10, 0), (-1, 3)])
def test_topk_count_rejects_non_positive(d: int, a: int) -> None:
    with pytest.raises(ValueError, match="d >= 1 and a >= 1"):
        topk_count(d, a)


def test_bag_scores_by_hand() -> None:
    got = bag_scores(MIL_LOGITS, 2)
    assert got.shape == (2, 2)
    assert got.tolist() == [[2.5, 3.0], [1.5, 2.0]]
    assert bag_scores(MIL_LOGITS, 1).tolist() == [[3.0, 4.0], [2.0, 3.0]]
    assert bag_scores(MIL_LOGITS, 3).tolist() == [[2.0, 2.0], [1.0, 1.0]]


def test_bag_scores_rejects_bad_k_and_shape() -> None:
    with pytest.raises(ValueError, match=r"k must be in \[1, d=3\]"):
        bag_scores(MIL_LOGITS, 4)
    with pytest.raises(ValueError, match=r"logits must be \(B, d, C\)"):
        bag_scores(MIL_LOGITS[0], 1)


def test_normalise_targets() -> None:
    got = normalise_targets(torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]))
    expected = [[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [1 / 3, 1 / 3, 1 / 3]]
    for row, exp_row in zip(got.tolist(), expected, strict=True):
        assert row == pytest.approx(exp_row)


def test_normalise_targets_names_the_empty_row() -> None:
    with pytest.raises(ValueError, match="target row 1 has no positive label"):
        normalise_targets(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="no positive label"):
        mil_loss(MIL_LOGITS, torch.tensor([[0.0, 0.0], [1.0, 0.0]]), a=2)


def test_mil_loss_by_hand_with_multi_hot_row() -> None:
    got = mil_loss(MIL_LOGITS, MIL_TARGETS, a=2)
    assert got.dim() == 0
    assert float(got) == pytest.approx(_expected_mil(), rel=1e-6)
    # a = 10 -> k = 1: s0 = (3, 4), s1 = (2, 3)
    ce0 = math.log(math.exp(3.0) + math.exp(4.0)) - 3.0
    ce1 = math.log(math.exp(2.0) + math.exp(3.0)) - 2.5
    assert float(mil_loss(MIL_LOGITS, MIL_TARGETS, a=10)) == pytest.approx((ce0 + ce1) / 2)


def test_mil_loss_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"targets shape \(2, 3\) does not match logits"):
        mil_loss(MIL_LOGITS, torch.ones(2, 3), a=2)
    with pytest.raises(ValueError, match=r"targets shape \(1, 2\) does not match"):
        mil_loss(MIL_LOGITS, torch.ones(1, 2), a=2)
    with pytest.raises(ValueError, match=r"targets must be \(B, C\)"):
        mil_loss(MIL_LOGITS, torch.ones(2), a=2)


def test_mask_entropy_by_hand() -> None:
    logits = torch.tensor([[[0.0, 0.0, 0.0], [LN3, 0.0, 0.0]],
                           [[5.0, 0.0, 0.0], [0.0, 0.0, 100.0]]])
    got = mask_entropy(logits)
    assert got.shape == (2, 2)
    z = math.exp(5.0) + 2.0
    expected = [[LN3, _entropy([3 / 5, 1 / 5, 1 / 5])],
                [_entropy([math.exp(5.0) / z, 1 / z, 1 / z]), 0.0]]
    for row, exp_row in zip(got.tolist(), expected, strict=True):
        assert row == pytest.approx(exp_row, abs=1e-6)


def test_bad_set_by_hand_with_multi_hot_row() -> None:
    logits = torch.tensor([[[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]],
                           [[0.0, 0.0, 5.0], [0.0, 5.0, 0.0], [5.0, 0.0, 0.0]]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    tau = 0.5
    z = math.exp(5.0) + 2.0
    confident = _entropy([math.exp(5.0) / z, 1 / z, 1 / z])
    assert confident < tau < LN3  # the premise of the expected values below
    # image 0: uniform -> high entropy; class 0 right; class 1 confidently wrong.
    # image 1 (labels 1 and 2): class 2 and class 1 right; class 0 confidently wrong.
    expected = [[True, False, True], [False, False, True]]
    got = bad_set(logits, targets, tau)
    assert got.dtype == torch.bool
    assert got.tolist() == expected
    # above every entropy: only the confidently wrong masks (and uniform's argmax 0 in
    # image 1, which is not a label there) stay bad
    assert bad_set(logits, targets, 2.0).tolist() == [[False, False, True], [False, False, True]]
    # below every entropy: everything is bad
    assert bad_set(logits, targets, -1.0).all()


def test_bad_set_shape_error() -> None:
    with pytest.raises(ValueError, match="does not match logits"):
        bad_set(torch.zeros(2, 3, 3), torch.ones(2, 2), 0.5)


def test_uncertainty_loss_by_hand() -> None:
    logits = torch.tensor([[[0.0, 0.0], [LN3, 0.0], [2.0, -1.0]]], requires_grad=True)
    bad = torch.tensor([[True, True, False]])
    first = -2 * math.log(0.5)
    second = -(math.log(0.75) + math.log(0.25))
    got = uncertainty_loss(logits, bad)
    assert float(got.detach()) == pytest.approx((first + second) / 2, rel=1e-6)
    got.backward()
    assert logits.grad is not None
    assert logits.grad[0, 2].tolist() == [0.0, 0.0]  # good masks get no gradient
    # d/do_j of -sum_c log_softmax_c = C p_j - 1; uniform mask -> 0; mean over 2 masks
    assert logits.grad[0, 0].tolist() == pytest.approx([0.0, 0.0], abs=1e-7)
    assert logits.grad[0, 1].tolist() == pytest.approx([(2 * 0.75 - 1) / 2,
                                                        (2 * 0.25 - 1) / 2], abs=1e-6)


def test_uncertainty_loss_uniform_is_c_log_c() -> None:
    c = 4
    logits = torch.full((2, 3, c), 7.0)
    bad = torch.tensor([[True, False, True], [False, False, True]])
    assert float(uncertainty_loss(logits, bad)) == pytest.approx(c * math.log(c), rel=1e-6)


def test_uncertainty_loss_without_bad_masks_is_a_connected_zero() -> None:
    logits = torch.randn(2, 3, 4, requires_grad=True)
    got = uncertainty_loss(logits, torch.zeros(2, 3, dtype=torch.bool))
    assert float(got.detach()) == 0.0
    assert got.requires_grad
    got.backward()
    assert logits.grad is not None
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_uncertainty_loss_shape_and_dtype_errors() -> None:
    with pytest.raises(ValueError, match=r"bad mask shape \(2, 2\) does not match"):
        uncertainty_loss(torch.zeros(2, 3, 4), torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="bad must be a bool tensor"):
        uncertainty_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3))


def test_student_loss_by_hand() -> None:
    bad = torch.tensor([[False, True, False], [False, False, False]])
    # the one bad mask is image 0, mask 1: logits (3, 0)
    p = math.exp(3.0) / (math.exp(3.0) + 1.0)
    unc = -(math.log(p) + math.log(1.0 - p))
    mil = _expected_mil()
    total, got_mil, got_unc = student_loss(MIL_LOGITS, MIL_TARGETS, bad, a=2)
    assert float(got_mil) == pytest.approx(mil, rel=1e-6)
    assert float(got_unc) == pytest.approx(unc, rel=1e-6)
    assert float(total) == pytest.approx(mil + 0.15 * unc, rel=1e-6)
    total, _, _ = student_loss(MIL_LOGITS, MIL_TARGETS, bad, a=2, lambda_mil=0.5,
                               lambda_unc=2.0)
    assert float(total) == pytest.approx(0.5 * mil + 2.0 * unc, rel=1e-6)
