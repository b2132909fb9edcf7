"""G4Seg refinement (docs/algorithms.md §4): diffusion maths, correspondence, mixing, flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from transformers import CLIPModel, CLIPProcessor

from segloop.errors import ConfigError, DataError
from segloop.models.clip import ClipScorer, build_tiny_clip
from segloop.models.diffusion import SD_SCHEDULE, build_tiny_pipeline
from segloop.pseudolabel.g4seg import (
    G4Seg,
    G4SegSettings,
    class_token_indices,
    correspondence,
    dense_clip_features,
    mix,
    noise_latent,
    patch_delta_to_pixels,
    predict_x0,
)

T = 400


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def tiny(tokenizer_dir: str) -> StableDiffusionPipeline:
    return build_tiny_pipeline(seed=0, tokenizer_dir=tokenizer_dir)


@pytest.fixture(scope="module")
def clip(tokenizer_dir: str) -> tuple[CLIPModel, CLIPProcessor]:
    return build_tiny_clip(seed=0, tokenizer_dir=tokenizer_dir)


def _ddim(prediction_type: str) -> DDIMScheduler:
    keys = ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps")
    return DDIMScheduler(**{k: SD_SCHEDULE[k] for k in keys}, prediction_type=prediction_type,
                         clip_sample=False)  # DDIM clips x0 to [-1, 1] by default


# --- settings ---------------------------------------------------------------------------------


def test_settings_defaults_follow_the_paper() -> None:
    s = G4SegSettings()
    assert (s.timestep, s.band, s.beta, s.resolution) == (400, (0.2, 0.6), 0.8, 512)
    assert s.template.format(c="dog") == "A photo of dog"
    assert (s.w_cross, s.w_self, s.seed, s.clip_size) == (1.0, 0.3, 0, None)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"band": (0.6, 0.2)}, "band"), ({"band": (0.2, 1.5)}, "band"),
    ({"beta": 1.2}, "beta"), ({"resolution": 100}, "multiple of 8"),
    ({"template": "A photo"}, "{c}"), ({"template": "{c} {x}"}, "only {c}"),
    ({"timestep": -1}, "timestep"), ({"w_self": float("nan")}, "w_self"),
])
def test_settings_reject_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        G4SegSettings(**kwargs)


# --- noise and one-step x0 ------------------------------------------------------------------


def test_noise_latent_is_the_closed_form(tiny: StableDiffusionPipeline) -> None:
    sched = tiny.scheduler
    a = float(sched.alphas_cumprod[T])
    # SD's scaled-linear schedule by hand: prod over s <= t of 1 - beta_s
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    assert a == pytest.approx(float(np.prod(1 - betas[: T + 1])), rel=1e-5)
    g = torch.Generator().manual_seed(5)
    z0, eps = torch.randn(1, 4, 3, 3, generator=g), torch.randn(1, 4, 3, 3, generator=g)
    z_t = noise_latent(sched, z0, T, noise=eps)
    torch.testing.assert_close(z_t, math.sqrt(a) * z0 + math.sqrt(1 - a) * eps)
    # a generator draws eps on the CPU: same seed, same z_t, equal to the formula
    drawn = noise_latent(sched, z0, T, torch.Generator().manual_seed(9))
    eps9 = torch.randn(z0.shape, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(drawn, math.sqrt(a) * z0 + math.sqrt(1 - a) * eps9)
    with pytest.raises(ConfigError, match="timestep 1000"):
        noise_latent(sched, z0, 1000, noise=eps)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_predict_x0_round_trip(kind: str) -> None:
    sched = _ddim(kind)
    a = float(sched.alphas_cumprod[T])
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 5, 5, generator=g), torch.randn(2, 4, 5, 5, generator=g)
    z_t = noise_latent(sched, x0, T, noise=eps)
    target = eps if kind == "epsilon" else math.sqrt(a) * eps - math.sqrt(1 - a) * x0
    x0_hat = predict_x0(sched, z_t, target, T)
    torch.testing.assert_close(x0_hat, x0, rtol=1e-5, atol=1e-5)
    # the same estimate as diffusers' own DDIM step
    sched.set_timesteps(50)
    assert T in sched.timesteps.tolist()
    ddim = sched.step(target, T, z_t).pred_original_sample
    torch.testing.assert_close(x0_hat, ddim, rtol=1e-5, atol=1e-5)


def test_predict_x0_rejects_other_prediction_types() -> None:
    z = torch.zeros(1, 4, 2, 2)
    with pytest.raises(ConfigError, match="'sample' is not supported"):
        predict_x0(_ddim("sample"), z, z, T)


def test_class_tokens_are_found_after_the_prefix(tiny: StableDiffusionPipeline) -> None:
    tok = tiny.tokenizer  # the tiny tokenizer: one token per character, BOS at 0
    # BOS + "a"(1) "photo"(5) "of"(2) = 9 tokens, then c a t
    assert class_token_indices(tok, "A photo of {c}", "cat") == [9, 10, 11]
    # "a" also occurs in the prefix: BOS a p h o t o o f a | a -> position 10
    assert class_token_indices(tok, "a photo of a {c}", "a") == [10]
    assert class_token_indices(tok, "{c} in a photo", "dog") == [1, 2, 3]
    with pytest.raises(DataError, match="not found"):
        class_token_indices(tok, "A photo of {c}", "x" * 100)


# --- correspondence and mixing ------------------------------------------------------------


def test_correspondence_recovers_a_permutation() -> None:
    g = torch.Generator().manual_seed(0)
    f_orig = torch.randn(3, 4, 8, generator=g)
    perm = torch.randperm(12, generator=g)
    scales = torch.rand(12, 1, generator=g) + 0.5  # cosine ignores positive scaling
    f_gen = (f_orig.reshape(12, 8)[perm] * scales).reshape(3, 4, 8)
    delta = correspondence(f_orig, f_gen)
    assert delta.dtype == torch.int64
    assert delta.tolist() == perm.tolist()


def test_patch_delta_to_pixels_on_a_toy_grid() -> None:
    # 2x2 patches of 2x3 pixels on a 4x6 image; patch p -> patch delta[p]
    got = patch_delta_to_pixels(np.array([3, 0, 0, 2]), (2, 2), (4, 6))
    expected = np.array([[15, 16, 17, 0, 1, 2],
                         [21, 22, 23, 6, 7, 8],
                         [0, 1, 2, 12, 13, 14],
                         [6, 7, 8, 18, 19, 20]])
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(patch_delta_to_pixels(np.arange(4), (2, 2), (4, 6)),
                                  np.arange(24).reshape(4, 6))
    # unequal bands: 3 rows over 2 patches -> rows {0, 1} and {2}; offsets past the target
    # patch's last row are clamped to it
    np.testing.assert_array_equal(patch_delta_to_pixels(np.array([1, 0]), (2, 1), (3, 1)),
                                  [[2], [2], [0]])
    with pytest.raises(DataError, match="outside"):
        patch_delta_to_pixels(np.array([4, 0, 0, 0]), (2, 2), (4, 6))


def test_mix_touches_only_the_uncertain_band() -> None:
    s = np.array([[0.1, 0.2, 0.5], [0.6, 0.61, 0.9]], np.float32)
    to_last = np.full((2, 3), 5, np.int64)  # every pixel corresponds to s[1, 2] = 0.9
    out = mix(s, to_last, (0.2, 0.6), 0.8)
    assert out.dtype == np.float32
    expected = np.array([[0.1, 0.8 * 0.2 + 0.2 * 0.9, 0.8 * 0.5 + 0.2 * 0.9],
                         [0.8 * 0.6 + 0.2 * 0.9, 0.61, 0.9]])
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out[0, 0] == s[0, 0] and out[1, 1] == s[1, 1] and out[1, 2] == s[1, 2]
    # reads come from the input, not from already-updated pixels
    chain = np.array([[1, 2, 0]], np.int64)
    s2 = np.array([[0.3, 0.4, 0.5]], np.float32)
    np.testing.assert_allclose(mix(s2, chain, (0.2, 0.6), 0.5), [[0.35, 0.45, 0.4]], rtol=1e-6)
    with pytest.raises(DataError, match="delta map"):
        mix(s, to_last[:1], (0.2, 0.6), 0.8)
    with pytest.raises(DataError, match="score map values"):
        mix(s * 2, to_last, (0.2, 0.6), 0.8)


def test_dense_clip_features_shape_and_inputs(clip: tuple[CLIPModel, CLIPProcessor]) -> None:
    model, processor = clip
    image = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    f = dense_clip_features(model, processor, image)
    assert f.shape == (4, 4, 16) and f.dtype == torch.float32  # 32 px / 8 px patches
    torch.testing.assert_close(f.norm(dim=-1), torch.ones(4, 4))
    for other in (dense_clip_features(model, processor.image_processor, image),
                  dense_clip_features(ClipScorer(model, processor, "cpu"), None, image)):
        assert torch.equal(other, f)
    assert dense_clip_features(model, processor, image, size=64).shape == (8, 8, 16)
    with pytest.raises(DataError, match="uint8"):
        dense_clip_features(model, processor, image.astype(np.float32))


# --- the flow on the tiny models ----------------------------------------------------------


def _image_and_coarse() -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    coarse = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (24, 1))  # spans every value
    return image, coarse


def _g4seg(pipe: StableDiffusionPipeline, clip: tuple[CLIPModel, CLIPProcessor],
           **kwargs: float) -> G4Seg:
    settings = G4SegSettings(resolution=32, **kwargs)
    return G4Seg(pipe, ClipScorer(clip[0], clip[1], "cpu"), settings)


def test_refine_end_to_end(tiny: StableDiffusionPipeline,
                           clip: tuple[CLIPModel, CLIPProcessor]) -> None:
    image, coarse = _image_and_coarse()
    g4 = _g4seg(tiny, clip)
    result = g4.run(image, coarse, "cat")
    refined = result.refined
    assert refined.shape == (24, 40) and refined.dtype == np.float32
    assert refined.min() >= 0.0 and refined.max() <= 1.0
    assert result.generated.shape == (32, 32, 3) and result.generated.dtype == np.uint8
    assert result.delta_map.shape == (24, 40) and result.delta_map.dtype == np.int64
    band = (coarse >= np.float32(0.2)) & (coarse <= np.float32(0.6))
    np.testing.assert_array_equal(refined[~band], coarse[~band])
    expected = 0.8 * coarse + 0.2 * coarse.reshape(-1)[result.delta_map]
    np.testing.assert_allclose(refined[band], expected[band], rtol=1e-6)
    assert np.abs(refined - coarse).max() > 0  # the correspondence moved something
    # deterministic on a rerun; refine() and a (model, processor) pair give the same
    again = g4.run(image, coarse, "cat")
    np.testing.assert_array_equal(again.refined, refined)
    np.testing.assert_array_equal(again.generated, result.generated)
    pair = G4Seg(tiny, clip, G4SegSettings(resolution=32))
    np.testing.assert_array_equal(pair.refine(image, coarse, "cat"), refined)


def test_refine_all_is_one_class_at_a_time(tiny: StableDiffusionPipeline,
                                           clip: tuple[CLIPModel, CLIPProcessor]) -> None:
    image, coarse = _image_and_coarse()
    maps = np.stack([coarse, coarse[:, ::-1].copy()])
    g4 = _g4seg(tiny, clip)
    out = g4.refine_all(image, maps, ["cat", "dog"])
    assert out.shape == (2, 24, 40) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], g4.refine(image, maps[0], "cat"))
    np.testing.assert_array_equal(out[1], g4.refine(image, maps[1], "dog"))
    with pytest.raises(DataError, match="one name per map"):
        g4.refine_all(image, maps, ["cat"])


def test_injection_changes_the_generated_image(tiny: StableDiffusionPipeline,
                                               clip: tuple[CLIPModel, CLIPProcessor]) -> None:
    image, coarse = _image_and_coarse()
    plain = _g4seg(tiny, clip, w_self=0.0, w_cross=0.0).run(image, coarse, "cat")
    injected = _g4seg(tiny, clip, w_self=5.0, w_cross=5.0).run(image, coarse, "cat")
    diff = np.abs(plain.generated.astype(int) - injected.generated.astype(int))
    assert diff.max() > 0


def test_refine_rejects_bad_inputs(tiny: StableDiffusionPipeline,
                                   clip: tuple[CLIPModel, CLIPProcessor]) -> None:
    image, coarse = _image_and_coarse()
    g4 = _g4seg(tiny, clip)
    with pytest.raises(DataError, match=r"expected \(24, 40\) float"):
        g4.refine(image, coarse[:10], "cat")
    with pytest.raises(DataError, match="coarse map values"):
        g4.refine(image, coarse + 1, "cat")
    with pytest.raises(ConfigError, match="timestep 1000"):
        G4Seg(tiny, clip, G4SegSettings(resolution=32, timestep=1000))
