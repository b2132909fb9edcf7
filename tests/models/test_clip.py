"""CLIP backend: the tiny scorer's probabilities and embeddings, loading, missing weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants as hf_constants

from segloop.errors import DataError, ModelNotFoundError
from segloop.models import clip as clip_mod
from segloop.models.clip import (
    ClipScorer,
    ImageTextScorer,
    build_tiny_clip,
    load_clip,
    tiny_tokenizer,
)

TEXTS = ["a photo of a car", "a photo of a tree", "sky"]


@pytest.fixture(autouse=True)
def _private_tokenizer_cache(tmp_path_factory: pytest.TempPathFactory,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Default-folder builds write the tiny tokenizer here, not into ~/.cache."""
    folder = tmp_path_factory.getbasetemp() / "tiny-clip-tokenizer"
    monkeypatch.setattr(clip_mod, "TINY_TOKENIZER_DIR", folder)


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(24, 40), (32, 32), (50, 30), (64, 48)]  # any size: the processor resizes
    return [rng.integers(0, 256, (*sizes[i % 4], 3), dtype=np.uint8) for i in range(n)]


@pytest.fixture(scope="module")
def scorer() -> ClipScorer:
    return load_clip("tiny", device="cpu", seed=0)


def test_scores_are_probability_rows(scorer: ClipScorer) -> None:
    probs = scorer.score(_images(5), TEXTS)
    assert isinstance(scorer, ImageTextScorer)
    assert probs.shape == (5, 3) and probs.dtype == np.float32
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_score_is_softmax_of_scaled_cosines(scorer: ClipScorer) -> None:
    images = _images(3)
    img, txt = scorer.image_embeddings(images), scorer.text_embeddings(TEXTS)
    logits = float(scorer.model.logit_scale.detach().exp()) * img @ txt.T
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(scorer.score(images, TEXTS), expected, atol=1e-5)


def test_embeddings_are_unit_vectors_of_the_projection_width(scorer: ClipScorer) -> None:
    img = scorer.image_embeddings(_images(4))
    txt = scorer.text_embeddings(TEXTS)
    assert img.shape == (4, 16) and txt.shape == (3, 16)
    assert img.dtype == txt.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    assert scorer.image_embeddings([]).shape == (0, 16)


def test_batching_does_not_change_results(scorer: ClipScorer) -> None:
    small = ClipScorer(scorer.model, build_tiny_clip(0)[1], scorer.device, batch_size=2)
    np.testing.assert_allclose(small.score(_images(5), TEXTS),
                               scorer.score(_images(5), TEXTS), atol=1e-5)


def test_tiny_is_deterministic_per_seed(tmp_path: Path) -> None:
    a = ClipScorer(*build_tiny_clip(seed=1, tokenizer_dir=tmp_path), device="cpu")
    b = ClipScorer(*build_tiny_clip(seed=1, tokenizer_dir=tmp_path), device="cpu")
    c = ClipScorer(*build_tiny_clip(seed=2, tokenizer_dir=tmp_path), device="cpu")
    images = _images(3)
    assert np.array_equal(a.image_embeddings(images), b.image_embeddings(images))
    assert np.array_equal(a.score(images, TEXTS), b.score(images, TEXTS))
    assert not np.allclose(a.image_embeddings(images), c.image_embeddings(images))


def test_bad_inputs_raise_data_errors(scorer: ClipScorer) -> None:
    with pytest.raises(DataError, match=r"\(H, W, 3\) uint8"):
        scorer.score([np.zeros((8, 8), np.uint8)], TEXTS)
    with pytest.raises(DataError, match=r"\(H, W, 3\) uint8"):
        scorer.score([np.zeros((8, 8, 3), np.float32)], TEXTS)
    with pytest.raises(DataError, match="at least one text"):
        scorer.score(_images(1), [])


def test_default_tokenizer_folder_is_written_once() -> None:
    tok = tiny_tokenizer()
    folder = clip_mod.TINY_TOKENIZER_DIR
    assert (folder / "tokenizer_config.json").is_file()
    assert tok("ab").input_ids == tiny_tokenizer()("ab").input_ids
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tiny-clip")]


def test_a_saved_model_folder_loads_back_offline(tmp_path: Path) -> None:
    model, processor = build_tiny_clip(seed=4, tokenizer_dir=tmp_path / "tok")
    model.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    loaded = load_clip(str(tmp_path / "clip"), device="cpu")
    images = _images(2)
    np.testing.assert_allclose(loaded.score(images, TEXTS),
                               ClipScorer(model, processor, "cpu").score(images, TEXTS),
                               atol=1e-6)


def test_missing_model_names_id_cache_and_fixes() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        load_clip("someone/no-clip-here", local_files_only=True, device="cpu")
    msg = str(info.value)
    assert "'someone/no-clip-here'" in msg and hf_constants.HF_HUB_CACHE in msg
    assert "hf download someone/no-clip-here" in msg and "models.clip.model_id" in msg


def test_missing_local_folder_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "clip" / "nowhere"
    with pytest.raises(ModelNotFoundError, match="does not exist") as info:
        load_clip(str(missing), device="cpu")
    assert str(missing) in str(info.value)
