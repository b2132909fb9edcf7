"""SAM+CLIP baseline scores: masked images, the text bank, cosine and probability scores."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from segloop.models.clip import ClipScorer, build_tiny_clip
from segloop.pseudolabel.sam_clip import (
    EmbeddingScorer,
    SamClipSettings,
    TextBank,
    mask_class_scores,
    masked_images,
)

RED, GREEN = (255, 0, 0), (0, 255, 0)
S2 = 1 / math.sqrt(2)


def _red_green_image() -> tuple[np.ndarray, np.ndarray]:
    """8x10 image: left half red, right half green; masks red, green, both, empty."""
    image = np.zeros((8, 10, 3), np.uint8)
    image[:, :5] = RED
    image[:, 5:] = GREEN
    masks = np.zeros((4, 8, 10), bool)
    masks[0, 2:6, 1:4] = True  # red only
    masks[1, 0:4, 6:10] = True  # green only
    masks[2, 4:8, 3:7] = True  # 2 red + 2 green columns
    return image, masks


class StubScorer:
    """Image embedding = unit mean RGB of the non-black pixels; texts from a table."""

    def __init__(self, texts: dict[str, Sequence[float]], logit_scale: float = 10.0) -> None:
        self.texts = texts
        self.logit_scale = logit_scale
        self.batches: list[int] = []

    def image_embeddings(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.batches.append(len(images))
        out = []
        for image in images:
            pixels = image.reshape(-1, 3).astype(np.float64)
            mean = pixels[pixels.any(axis=1)].mean(axis=0)
            out.append(mean / np.linalg.norm(mean))
        return np.asarray(out, np.float32)

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray([self.texts[t] for t in texts], np.float32)


STUB_TEXTS = {"a photo of a red": (1, 0, 0), "a photo of a green": (0, 1, 0),
              "a photo of a yellow": (S2, S2, 0)}
CLASSES = ["red", "green", "yellow"]


def test_masked_images_fill_keep_and_crop_with_pad() -> None:
    image = np.arange(20 * 30 * 3, dtype=np.uint32).reshape(20, 30, 3).astype(np.uint8)
    masks = np.zeros((3, 20, 30), bool)
    masks[0, 5:15, 10:20] = True  # box 10x10 -> pad 2 each side -> rows 3:17, cols 8:22
    masks[0, 5, 10] = False
    masks[1, 0:4, 28:30] = True  # box 5x2 at the corner: pad 1 row (clipped above), 0 cols
    masks[1, 4, 28] = True
    fill = (7, 8, 9)
    out = masked_images(image, masks, crop=True, pad=0.2, fill=fill)
    assert [o.shape for o in out] == [(14, 14, 3), (6, 2, 3), (1, 1, 3)]
    assert all(o.dtype == np.uint8 for o in out)
    first, inside = out[0], masks[0, 3:17, 8:22]
    np.testing.assert_array_equal(first[inside], image[3:17, 8:22][inside])
    np.testing.assert_array_equal(first[~inside], np.tile(fill, ((~inside).sum(), 1)))
    assert tuple(first[2, 2]) == fill  # the hole at (5, 10)
    np.testing.assert_array_equal(out[1][:4], image[0:4, 28:30])
    np.testing.assert_array_equal(out[1][4, 0], image[4, 28])
    assert tuple(out[1][4, 1]) == fill and (out[1][5] == fill).all()
    np.testing.assert_array_equal(out[2], np.array([[fill]], np.uint8))
    square = np.zeros((1, 20, 30), bool)
    square[0, 10:12, 10:12] = True  # 2x2 box: pad 0.25 -> 0.5 rounds up to 1, 0.24 -> 0
    assert masked_images(image, square, crop=True, pad=0.25)[0].shape == (4, 4, 3)
    assert masked_images(image, square, crop=True, pad=0.24)[0].shape == (2, 2, 3)


def test_masked_images_without_crop_are_full_size() -> None:
    image, masks = _red_green_image()
    out = masked_images(image, masks, crop=False, pad=0.5)
    assert [o.shape for o in out] == [(8, 10, 3)] * 3 + [(1, 1, 3)]
    np.testing.assert_array_equal(out[0][masks[0]], image[masks[0]])
    assert not out[0][~masks[0]].any()


def test_cosine_scores_are_exact_and_batched() -> None:
    image, masks = _red_green_image()
    stub = StubScorer(STUB_TEXTS)
    bank = TextBank(stub, CLASSES, "a photo of a {c}")
    assert bank.texts == ["a photo of a red", "a photo of a green", "a photo of a yellow"]
    assert bank.embeddings.dtype == np.float32 and bank.embeddings.shape == (3, 3)
    scores = mask_class_scores(stub, image, masks[:3], bank, SamClipSettings(batch_size=2))
    expected = [[1, 0, S2], [0, 1, S2], [S2, S2, 1]]
    assert scores.dtype == np.float32 and scores.shape == (3, 3)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert stub.batches == [2, 1]
    none = mask_class_scores(stub, image, masks[:0], bank, SamClipSettings())
    assert none.shape == (0, 3) and none.dtype == np.float32


def test_probability_scores_are_softmax_of_scaled_cosine() -> None:
    image, masks = _red_green_image()
    stub = StubScorer(STUB_TEXTS, logit_scale=10.0)
    bank = TextBank(stub, CLASSES, "a photo of a {c}")
    settings = SamClipSettings(score="probability", crop=False)
    scores = mask_class_scores(stub, image, masks[:3], bank, settings)
    e1, e0, eh = math.exp(10.0), 1.0, math.exp(10.0 * S2)
    red = [e1 / (e1 + e0 + eh), e0 / (e1 + e0 + eh), eh / (e1 + e0 + eh)]
    both = [eh / (2 * eh + e1), eh / (2 * eh + e1), e1 / (2 * eh + e1)]
    np.testing.assert_allclose(scores[0], red, rtol=1e-5)
    np.testing.assert_allclose(scores[1], [red[1], red[0], red[2]], rtol=1e-5)
    np.testing.assert_allclose(scores[2], both, rtol=1e-5)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ClipScorer:
    model, processor = build_tiny_clip(seed=0, tokenizer_dir=tmp_path_factory.mktemp("tok"))
    return ClipScorer(model, processor, "cpu")


def test_tiny_clip_scores(tiny: ClipScorer) -> None:
    scorer: EmbeddingScorer = tiny  # ClipScorer satisfies the protocol
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    masks = np.zeros((3, 40, 48), bool)
    masks[0, 5:30, 4:20] = True
    masks[1, 20:40, 10:48] = True
    masks[2] = rng.random((40, 48)) > 0.5
    bank = TextBank(scorer, ["car", "tree", "sky", "road"], "a photo of a {c}")
    np.testing.assert_allclose(np.linalg.norm(bank.embeddings, axis=1), 1.0, rtol=1e-5)
    settings = SamClipSettings(batch_size=2)
    cosine = mask_class_scores(scorer, image, masks, bank, settings)
    assert cosine.shape == (3, 4) and cosine.dtype == np.float32
    assert np.all(np.abs(cosine) <= 1.0)
    np.testing.assert_array_equal(cosine, mask_class_scores(scorer, image, masks, bank,
                                                            settings))
    pieces = masked_images(image, masks, crop=True, pad=0.1)
    direct = tiny.image_embeddings(pieces) @ bank.embeddings.T
    np.testing.assert_allclose(cosine, direct, atol=1e-5)
    prob = mask_class_scores(scorer, image, masks, bank,
                             SamClipSettings(score="probability"))
    assert prob.shape == (3, 4) and np.all(prob > 0)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)
    assert tiny.logit_scale == pytest.approx(float(tiny.model.logit_scale.detach().exp()))
    logits = tiny.logit_scale * direct
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(prob, expected, rtol=1e-4)


def test_rejects_bad_template_and_mismatched_shapes() -> None:
    stub = StubScorer(STUB_TEXTS)
    with pytest.raises(ValueError, match=r"\{c\}"):
        TextBank(stub, CLASSES, "a photo of a thing")
    with pytest.raises(ValueError, match=r"\{c\}"):
        SamClipSettings(template="no class here")
    with pytest.raises(ValueError, match="score"):
        SamClipSettings(score="logit")  # type: ignore[arg-type]
    image, masks = _red_green_image()
    bank = TextBank(stub, CLASSES, "a photo of a {c}")
    wrong = np.zeros((2, 8, 9), bool)
    with pytest.raises(ValueError, match=r"\(2, 8, 9\).*\(8, 10, 3\)"):
        mask_class_scores(stub, image, wrong, bank, SamClipSettings())
    with pytest.raises(ValueError, match=r"\(2, 8, 9\).*\(8, 10, 3\)"):
        masked_images(image, wrong, crop=True, pad=0.1)
    with pytest.raises(ValueError, match=r"\(8, 10\)"):
        masked_images(image[..., 0], masks, crop=False, pad=0.0)
