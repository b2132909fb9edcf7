"""MaskDiffusion (docs/algorithms.md §4b): pure steps on constructed tensors, then the tiny
pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from segloop.errors import ConfigError, DataError
from segloop.models.diffusion import build_tiny_pipeline
from segloop.pseudolabel.maskdiffusion import (
    EMPTY_SCORE,
    MaskDiffusion,
    MaskDiffusionResult,
    MaskDiffusionSettings,
    class_token_indices,
    class_weights,
    cosine_scores,
    kmeans,
    prototypes,
    spectral_segments,
)

TINY_LAYERS = (
    "down_blocks.1.attentions.0.transformer_blocks.0.attn2",
    "mid_block.attentions.0.transformer_blocks.0.attn2",
    "up_blocks.0.attentions.0.transformer_blocks.0.attn2",
    "up_blocks.0.attentions.1.transformer_blocks.0.attn2",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> StableDiffusionPipeline:
    return build_tiny_pipeline(0, tokenizer_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)


# ---- prompt and token positions -------------------------------------------------------------

def test_class_token_indices_on_the_tiny_tokenizer(tiny: StableDiffusionPipeline) -> None:
    tok = tiny.tokenizer  # character-level: "cat" -> c, a, t</w>; ", " -> ",</w>"
    prompt, positions = class_token_indices(tok, ["cat", "dog", "sky"])
    assert prompt == "cat, dog, sky"
    assert positions == [[1, 2, 3], [5, 6, 7], [9, 10, 11]]
    ids = tok(prompt).input_ids
    assert ids[0] == tok.bos_token_id
    assert [tok.decode([ids[p] for p in pos]) for pos in positions] == ["cat", "dog", "sky"]
    assert [tok.decode([ids[4]]), tok.decode([ids[8]])] == [",", ","]
    _, spaced = class_token_indices(tok, ["ab", "cd"], separator=" and ")
    assert spaced == [[1, 2], [6, 7]]  # BOS a b</w> a n d</w> c d</w>


def test_class_token_indices_errors(tiny: StableDiffusionPipeline) -> None:
    tok = tiny.tokenizer
    names = [c * 10 for c in "abcdefg"]
    assert all(len(tok.tokenize(n)) == 10 for n in names)
    # n names take 10 n + (n - 1) separators + BOS + EOS: 6 -> 67 tokens, 7 -> 78 > 77
    with pytest.raises(ConfigError, match="takes 78 tokens.*at most 77.*first 6 classes fit"):
        class_token_indices(tok, names)
    assert class_token_indices(tok, names[:6])[1][-1] == list(range(56, 66))
    with pytest.raises(ConfigError, match="merges with the class names"):
        class_token_indices(tok, ["ab", "cd"], separator="")
    with pytest.raises(ConfigError, match="distinct"):
        class_token_indices(tok, ["cat", "cat"])
    with pytest.raises(ConfigError, match="must not be empty"):
        class_token_indices(tok, ["cat", " "])
    with pytest.raises(ConfigError, match="at least one class"):
        class_token_indices(tok, [])


# ---- eq. 5.5 and the cosine step ------------------------------------------------------------

def test_class_weights_by_hand() -> None:
    maps = torch.tensor([[[-1.0, 0.0], [1.0, 3.0]], [[2.0, 2.0], [2.0, 2.0]]])
    assert torch.equal(class_weights(maps, "minmax"),
                       torch.tensor([[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]))
    assert torch.equal(class_weights(maps, "relu"),
                       torch.tensor([[[0.0, 0.0], [1.0, 3.0]], [[2.0, 2.0], [2.0, 2.0]]]))
    with pytest.raises(ConfigError, match="'softmax'"):
        class_weights(maps, "softmax")


def test_prototypes_are_weighted_means_and_zero_weight_gives_zero() -> None:
    features = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 8.0]]).reshape(2, 1, 4)
    weights = torch.tensor([[1.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]]).reshape(2, 1, 4)
    protos = prototypes(features, weights)
    # class 0: (1 * (1, 0) + 3 * (4, 8)) / 4 = (3.25, 6)
    assert torch.equal(protos, torch.tensor([[3.25, 6.0], [0.0, 0.0]]))
    with pytest.raises(DataError, match="must be >= 0"):
        prototypes(features, -weights)
    with pytest.raises(DataError, match=r"on the features' grid \(1, 4\)"):
        prototypes(features, weights.reshape(2, 2, 2))


def test_two_blobs_label_their_halves() -> None:
    left, right = torch.tensor([1.0, 0.1, 0.0]), torch.tensor([0.0, 0.1, 1.0])
    features = torch.empty(3, 6, 6)
    features[:, :, :3] = left[:, None, None]
    features[:, :, 3:] = right[:, None, None]
    features[:, 5, 5] = -(left + right)  # cosine < 0 with both prototypes
    attention = torch.zeros(3, 6, 6)  # class 2 attends nowhere
    attention[0, 1:3, 0:2] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # a blob on the left
    attention[1, 3:5, 4:6] = 5.0  # a blob on the right
    protos = prototypes(features, attention)
    assert torch.allclose(protos, torch.stack([left, right, torch.zeros(3)]))
    scores = cosine_scores(features, protos)
    assert scores.shape == (3, 6, 6) and scores.dtype == torch.float32
    cross = 0.01 / 1.01  # cos(left, right) = 0.1 * 0.1 / |(1, 0.1, 0)|^2
    assert scores[0, 0, 0].item() == pytest.approx(1.0)
    assert scores[1, 0, 0].item() == pytest.approx(cross)
    assert scores[1, 4, 4].item() == pytest.approx(1.0)
    assert bool((scores[2] == EMPTY_SCORE).all())
    labels = scores.argmax(0)
    want = torch.zeros(6, 6, dtype=torch.long)
    want[:, 3:] = 1
    assert scores[0, 5, 5] < 0 and scores[1, 5, 5] < 0
    want[5, 5] = int(scores[:2, 5, 5].argmax())  # the empty class does not win either
    assert torch.equal(labels, want)


# ---- unsupervised ---------------------------------------------------------------------------

def test_kmeans_splits_obvious_pairs() -> None:
    x = np.array([[0.0, 0.0], [10.0, 10.0], [0.0, 1.0], [10.0, 11.0]])
    labels = kmeans(x, 2, seed=0)
    assert labels[0] == labels[2] and labels[1] == labels[3] and labels[0] != labels[1]


def test_spectral_segments_separate_feature_groups() -> None:
    gen = torch.Generator().manual_seed(0)
    features = 0.05 * torch.randn(4, 6, 6, generator=gen)
    features[0, :, :4] += 1.0  # columns 0-3: group A, columns 4-5: group B
    features[1, :, 4:] += 1.0
    segments = spectral_segments(features, 2)
    assert segments.shape == (6, 6) and segments.dtype == np.int32
    want = np.zeros((6, 6), np.int32)
    want[:, 4:] = 1  # ids by first appearance: the top-left pixel's segment is 0
    assert np.array_equal(segments, want)
    stripes = 0.05 * torch.randn(3, 6, 5, generator=gen)
    for i in range(3):
        stripes[2 - i, 2 * i : 2 * i + 2] += 1.0
    three = spectral_segments(stripes, 3, seed=4)
    assert np.array_equal(three, np.repeat(np.arange(3), 2)[:, None].repeat(5, 1))
    assert np.array_equal(spectral_segments(stripes, 3, seed=4), three)
    with pytest.raises(ConfigError, match=r"k must be in 1\.\.30"):
        spectral_segments(stripes, 31)


# ---- settings and the tiny pipeline ---------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "match"), [
    ({"resolution": 30}, "multiple of 8"),
    ({"timestep": -1}, "timestep must be >= 0"),
    ({"feature_blocks": (0, 0)}, "distinct"),
    ({"attention_places": ("left",)}, "subset"),
    ({"attention_max_side_ratio": 0.0}, r"\(0, 1\]"),
    ({"attention_weights": "softmax"}, "minmax"),
])
def test_settings_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MaskDiffusionSettings(**kwargs)


def test_settings_checked_against_the_pipeline(tiny: StableDiffusionPipeline) -> None:
    with pytest.raises(ConfigError, match=r"0\.\.1: this UNet has 2 up blocks"):
        MaskDiffusion(tiny, MaskDiffusionSettings(resolution=32, feature_blocks=(0, 2)))
    with pytest.raises(ConfigError, match="must be < 1000"):
        MaskDiffusion(tiny, MaskDiffusionSettings(resolution=32, timestep=1000))


def test_segment_end_to_end(tiny: StableDiffusionPipeline, image: np.ndarray) -> None:
    md = MaskDiffusion(tiny, MaskDiffusionSettings(resolution=32))
    names = ["road", "sky", "car"]
    result = md.segment(image, names)
    assert isinstance(result, MaskDiffusionResult)
    assert result.scores.shape == (3, 20, 28) and result.scores.dtype == np.float32
    assert result.labels.shape == (20, 28) and result.labels.dtype == np.int64
    assert result.features.shape == (96, 16, 16) and result.features.dtype == np.float32
    assert result.attention.shape == (3, 16, 16) and result.attention.dtype == np.float32
    assert result.prompt == "road, sky, car"
    assert result.token_indices == [[1, 2, 3, 4], [6, 7, 8], [10, 11, 12]]
    assert result.layers == TINY_LAYERS  # every tiny layer is 8x8 = half the 16x16 latent
    assert np.allclose(np.linalg.norm(result.features, axis=0), 1.0, atol=1e-5)
    assert np.allclose(result.weights.min(axis=(1, 2)), 0.0)
    assert np.allclose(result.weights.max(axis=(1, 2)), 1.0)
    assert np.array_equal(result.labels, result.scores.argmax(0))
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    assert np.all(np.abs(result.scores) <= 1 + 1e-5)
    again = md.segment(image, names)
    for field in ("scores", "labels", "features", "attention"):
        assert np.array_equal(getattr(result, field), getattr(again, field)), field


def test_attention_fallback_and_timestep(tiny: StableDiffusionPipeline,
                                        image: np.ndarray) -> None:
    base = MaskDiffusion(tiny, MaskDiffusionSettings(resolution=32)).segment(image, ["a", "b"])
    # no tiny layer has side <= 0.25 * 16 = 4: the coarsest ones (8x8, all four) are used
    fallback = MaskDiffusion(tiny, MaskDiffusionSettings(
        resolution=32, attention_max_side_ratio=0.25)).segment(image, ["a", "b"])
    assert fallback.layers == TINY_LAYERS
    assert np.array_equal(fallback.attention, base.attention)
    mid = MaskDiffusion(tiny, MaskDiffusionSettings(
        resolution=32, attention_places=("mid",))).segment(image, ["a", "b"])
    assert mid.layers == (TINY_LAYERS[1],)
    assert not np.allclose(mid.attention, base.attention)
    noisy = MaskDiffusion(tiny, MaskDiffusionSettings(resolution=64, timestep=50))
    first = noisy.segment(image, ["a", "b"])
    assert first.features.shape == (96, 32, 32) and first.attention.shape == (2, 32, 32)
    assert np.array_equal(first.features, noisy.segment(image, ["a", "b"]).features)
    clean = MaskDiffusion(tiny, MaskDiffusionSettings(resolution=64)).segment(image, ["a", "b"])
    assert not np.allclose(first.features, clean.features)  # the noise reached the UNet


def test_segment_rejects_bad_input(tiny: StableDiffusionPipeline, image: np.ndarray) -> None:
    md = MaskDiffusion(tiny, MaskDiffusionSettings(resolution=32))
    with pytest.raises(DataError, match=r"expected \(H, W, 3\) uint8 RGB"):
        md.segment(image.astype(np.float32), ["a"])
    with pytest.raises(ConfigError, match="only the first"):
        md.segment(image, [c * 10 for c in "abcdefg"])


def test_segment_unsupervised(tiny: StableDiffusionPipeline, image: np.ndarray) -> None:
    md = MaskDiffusion(tiny, MaskDiffusionSettings(resolution=32))
    segments = md.segment_unsupervised(image, 3)
    assert segments.shape == (20, 28) and segments.dtype == np.int32
    assert segments[0, 0] == 0 and set(np.unique(segments)) <= {0, 1, 2}
    assert np.array_equal(segments, md.segment_unsupervised(image, 3))
    assert len(np.unique(segments)) == 3  # nearest upsampling keeps every 16x16 cell
