from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segloop.active import acquisition as acq
from segloop.errors import ConfigError, DataError

# Three pixels, C = 3, laid out along W: a = [.6, .1, .3], b = [.4, .4, .2], c = one-hot.
VECS = [[0.6, 0.1, 0.3], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0]]
PROBS = torch.tensor(VECS).T.reshape(1, 3, 1, 3)

# Hand-computed expectations (natural log):
# entropy(a) = .6*.510826 + .1*2.302585 + .3*1.203973; entropy(b) = .8*.916291 + .2*1.609438
HAND = {
    "entropy": [0.897946, 1.054920, 0.0],
    "margin": [0.7, 1.0, 0.0],
    "least_confidence": [0.4, 0.6, 0.0],
    # uig(a) = 1 - .6 * (0.44 - 1/3) / (0.46 - 1/3) = 1 - .6 * 8 / 9.5
    "uig": [0.494737, 0.9, 0.0],
    "uig_pixel": [0.494737, 0.9, 0.0],
}


def test_uig_worked_checks() -> None:
    v = torch.tensor([[0.6, 0.1, 0.3], [0.4, 0.4, 0.2]])
    got = acq.uig(v, dim=1)
    assert round(float(got[0]), 2) == 0.49
    assert round(float(got[1]), 2) == 0.90


@pytest.mark.parametrize("c", [2, 3, 19])
def test_uig_edges(c: int) -> None:
    one_hot = torch.zeros(c)
    one_hot[c - 1] = 1.0
    uniform = torch.full((c,), 1.0 / c)
    assert float(acq.uig(one_hot, dim=0)) == pytest.approx(0.0, abs=1e-6)
    assert float(acq.uig(uniform, dim=0)) == 1.0


def test_uig_two_classes_is_one_minus_max() -> None:
    v = torch.tensor([[0.7, 0.3], [0.9, 0.1], [0.5, 0.5]])
    torch.testing.assert_close(acq.uig(v, dim=1), torch.tensor([0.3, 0.1, 1.0]))


def test_uig_shapes_dim_and_range() -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(2, 5, 4, 3, generator=g).softmax(dim=1)
    per_pixel = acq.uig(probs)
    assert per_pixel.shape == (2, 4, 3) and per_pixel.dtype == torch.float32
    torch.testing.assert_close(acq.uig(probs.movedim(1, -1), dim=-1), per_pixel)
    assert float(per_pixel.min()) >= 0.0 and float(per_pixel.max()) <= 1.0
    assert acq.uig(probs.double()).dtype == torch.float64
    half = acq.uig(torch.tensor([[1 / 3] * 3, [0.6, 0.1, 0.3]], dtype=torch.float16))
    assert half.dtype == torch.float16 and half.tolist() == pytest.approx([1.0, 0.4947], abs=1e-3)


def test_uig_gradient_is_finite_even_at_uniform() -> None:
    logits = torch.zeros(1, 4, 2, 2)
    logits[0, :, 0, 0] = torch.tensor([3.0, 0.0, -1.0, 0.5])
    logits.requires_grad_(True)
    acq.uig(logits.softmax(dim=1)).mean().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("strategy", sorted(HAND))
def test_pixel_strategies_by_hand(strategy: str) -> None:
    got = acq.pixel_scores(strategy, PROBS)
    assert got.shape == (1, 1, 3)
    torch.testing.assert_close(got[0, 0], torch.tensor(HAND[strategy]), atol=1e-5, rtol=0)


def test_named_functions_match_registry() -> None:
    torch.testing.assert_close(acq.entropy(PROBS), acq.pixel_scores("entropy", PROBS))
    torch.testing.assert_close(acq.margin(PROBS), acq.pixel_scores("margin", PROBS))
    torch.testing.assert_close(
        acq.least_confidence(PROBS), acq.pixel_scores("least_confidence", PROBS)
    )


def test_bald_by_hand() -> None:
    # T=2, B=2, C=2, 1x1: image 0 samples [1,0] and [0,1]; image 1 [.8,.2] and [.2,.8].
    mc = torch.tensor([[[1.0, 0.0], [0.8, 0.2]], [[0.0, 1.0], [0.2, 0.8]]]).reshape(2, 2, 2, 1, 1)
    h_08 = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))  # 0.500402
    expected = torch.tensor([math.log(2), math.log(2) - h_08])  # [0.693147, 0.192745]
    torch.testing.assert_close(acq.bald(mc)[:, 0, 0], expected)


def test_bald_zero_when_samples_agree() -> None:
    p = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1)).softmax(dim=1)
    agree = acq.bald(p.expand(5, 1, 3, 4, 4))
    assert agree.shape == (1, 4, 4)
    assert float(agree.abs().max()) < 1e-6 and float(agree.min()) >= 0.0
    disagree = acq.bald(torch.stack([p, p.flip(1)]))
    assert float(disagree.max()) > 0.01


def test_uig_image_vs_uig_pixel() -> None:
    # Two one-hot pixels of different classes: per pixel certain, on average uncertain.
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).T.reshape(1, 3, 1, 2)
    # mean [.5, .5, 0]: Var = 1/6 - 1/9, Var' = 1/8 - 1/9 -> UIG = 1 - .25 * .5
    torch.testing.assert_close(acq.image_scores("uig", probs), torch.tensor([0.875]))
    torch.testing.assert_close(acq.uig_image(probs), torch.tensor([0.875]))
    assert float(acq.image_scores("uig_pixel", probs)[0]) == pytest.approx(0.0, abs=1e-6)


def test_image_scores_mean_and_valid() -> None:
    probs = PROBS.repeat(2, 1, 1, 1)
    got = acq.image_scores("margin", probs)
    torch.testing.assert_close(got, torch.full((2,), (0.7 + 1.0 + 0.0) / 3))
    valid = torch.tensor([[[True, True, False]], [[False, False, False]]])
    torch.testing.assert_close(acq.image_scores("margin", probs, valid), torch.tensor([0.85, 0.0]))
    # "uig" with valid averages the softmax of the valid pixels only: mean of a and b
    # = [.5, .25, .25] -> V' = V -> UIG = 1 - .5
    torch.testing.assert_close(acq.image_scores("uig", probs, valid), torch.tensor([0.5, 0.0]))
    mc = probs.expand(3, 2, 3, 1, 3)
    torch.testing.assert_close(acq.image_scores("bald", mc), torch.zeros(2), atol=1e-6, rtol=0)


def test_strategy_registry_and_errors() -> None:
    assert set(acq.STRATEGIES) == {
        "random",
        "entropy",
        "margin",
        "least_confidence",
        "uig",
        "uig_pixel",
        "bald",
        "badge",
        "typiclust",
    }
    assert {n for n, i in acq.STRATEGIES.items() if i.kind != "uncertainty"} == {
        "random", "badge", "typiclust"}
    assert acq.STRATEGIES["bald"].needs_mc and not acq.STRATEGIES["uig"].needs_mc
    assert acq.check_strategy("margin") == "margin"
    with pytest.raises(ConfigError, match="least_confidence"):
        acq.check_strategy("entropyy")
    with pytest.raises(ConfigError, match="random_scores"):
        acq.pixel_scores("random", PROBS)
    with pytest.raises(ConfigError, match="selects with segloop.active.choose"):
        acq.image_scores("badge", PROBS)
    with pytest.raises(DataError, match="MC samples"):
        acq.pixel_scores("bald", PROBS)
    with pytest.raises(DataError, match="B, C, H, W"):
        acq.pixel_scores("entropy", PROBS[None])
    with pytest.raises(DataError, match="2 classes"):
        acq.uig(torch.ones(3, 1), dim=1)
    with pytest.raises(DataError, match="floating"):
        acq.entropy(torch.ones(1, 2, 2, 2, dtype=torch.int64))


def test_random_scores_seeded() -> None:
    a = acq.random_scores(5, torch.Generator().manual_seed(3))
    b = acq.random_scores(5, torch.Generator().manual_seed(3))
    assert a.shape == (5,) and torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) < 1.0


def _naive_region_scores(scores, regions, r, valid):
    out, pixels = [], []
    for k in range(r):
        inside = regions == k
        pixels.append(int(inside.sum()))
        sel = inside & valid if valid is not None else inside
        out.append(float(scores[sel].mean()) if sel.any() else -math.inf)
    return out, pixels


@pytest.mark.parametrize("use_valid", [False, True])
def test_region_scores_match_naive_loop(use_valid: bool) -> None:
    g = torch.Generator().manual_seed(7)
    scores = torch.rand(9, 11, generator=g)
    regions = torch.randint(0, 6, (9, 11), generator=g)
    regions[regions == 4] = 3  # region 4 has no pixel at all
    valid = torch.rand(9, 11, generator=g) > 0.4 if use_valid else None
    if valid is not None:
        valid[regions == 5] = False  # region 5 has pixels but none valid
    got, pixels = acq.region_scores(scores, regions, 7, valid)
    want, want_pixels = _naive_region_scores(scores, regions, 7, valid)
    assert pixels.dtype == torch.int64 and pixels.tolist() == want_pixels
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), np.array(want, dtype=np.float32), rtol=1e-6)
    assert got[4] == -math.inf and pixels[4] == 0
    if use_valid:
        assert got[5] == -math.inf and pixels[5] == want_pixels[5] > 0


def test_region_scores_accepts_numpy_and_checks_ids() -> None:
    regions = np.array([[0, 0], [1, 1]], dtype=np.int32)
    got, _ = acq.region_scores(torch.tensor([[1.0, 3.0], [5.0, 5.0]]), regions, 2)
    assert got.tolist() == [2.0, 5.0]
    with pytest.raises(DataError, match="relabel"):
        acq.region_scores(torch.zeros(2, 2), regions, 1)


def test_region_majority() -> None:
    pred = torch.tensor([[0, 2, 2, 1], [1, 1, 0, 2]])
    regions = torch.tensor([[0, 0, 0, 1], [1, 1, 1, 1]])
    # region 0: {0, 2, 2} -> 2; region 1: {1, 1, 1, 0, 2} -> 1; region 2 empty -> -1
    assert acq.region_majority(pred, regions, 3, 3).tolist() == [2, 1, -1]
    tie = torch.tensor([[2, 1]])
    assert acq.region_majority(tie, torch.zeros(1, 2, dtype=torch.int64), 1, 3).tolist() == [1]
    with pytest.raises(DataError, match="0..2"):
        acq.region_majority(pred + 1, regions, 3, 3)
