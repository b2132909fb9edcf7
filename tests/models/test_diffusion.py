"""Diffusion backend: tiny and random pipelines, schedulers, device/dtype, missing weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from huggingface_hub import constants as hf_constants
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel

from segloop.config import DiffusionModelConfig
from segloop.errors import ConfigError, ModelNotFoundError
from segloop.models import clip as clip_mod
from segloop.models.diffusion import (
    SCHEDULERS,
    LoadedPipeline,
    build_random_pipeline,
    build_tiny_pipeline,
    load_from_config,
    load_pipeline,
    random_configs,
    set_scheduler,
)


@pytest.fixture(autouse=True)
def _private_tokenizer_cache(tmp_path_factory: pytest.TempPathFactory,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Default-folder builds write the tiny tokenizer here, not into ~/.cache."""
    folder = tmp_path_factory.getbasetemp() / "tiny-clip-tokenizer"
    monkeypatch.setattr(clip_mod, "TINY_TOKENIZER_DIR", folder)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> StableDiffusionPipeline:
    return build_tiny_pipeline(seed=0, tokenizer_dir=tmp_path_factory.mktemp("tok"))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _generate(pipe: StableDiffusionPipeline, prompts: list[str], seeds: list[int],
              **kwargs: object) -> np.ndarray:
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    out = pipe(prompts, num_inference_steps=2, generator=gens, output_type="np", **kwargs)
    return np.asarray(out.images)


def test_tiny_is_a_seeded_stable_diffusion_pipeline(tmp_path: Path) -> None:
    a = build_tiny_pipeline(seed=1, tokenizer_dir=tmp_path)
    b = build_tiny_pipeline(seed=1, tokenizer_dir=tmp_path)
    c = build_tiny_pipeline(seed=2, tokenizer_dir=tmp_path)
    assert isinstance(a, StableDiffusionPipeline) and a.safety_checker is None
    for part in ("unet", "vae", "text_encoder"):
        assert _same_weights(getattr(a, part), getattr(b, part))
        assert not _same_weights(getattr(a, part), getattr(c, part))
    assert (tmp_path / "vocab.json").is_file() and a.tokenizer.vocab_size == 514
    assert a.text_encoder.config.eos_token_id == a.tokenizer.eos_token_id == 513


def test_building_does_not_disturb_the_global_rng(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_pipeline(seed=5, tokenizer_dir=tmp_path)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_generates_small_images_reproducibly(tiny: StableDiffusionPipeline) -> None:
    first = _generate(tiny, ["a red car", "a tree"], [7, 8])
    again = _generate(tiny, ["a red car", "a tree"], [7, 8])
    assert first.shape == (2, 32, 32, 3) and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert np.array_equal(first, again)
    assert not np.allclose(first[0], first[1])  # different seeds, different noise
    pil = tiny("a red car", num_inference_steps=2, generator=torch.Generator().manual_seed(7))
    assert isinstance(pil.images[0], Image.Image) and pil.images[0].size == (32, 32)


def test_batch_with_per_image_generators_equals_images_made_alone(
        tiny: StableDiffusionPipeline) -> None:
    # What deterministic per-image seeds rely on: an image does not depend on its batch.
    # Exact equality does not hold (batched matmuls round differently), so allow ~1e-5.
    batch = _generate(tiny, ["a red car", "a tree"], [11, 12], negative_prompt=["blur"] * 2)
    alone = [_generate(tiny, [p], [s], negative_prompt=["blur"])[0]
             for p, s in (("a red car", 11), ("a tree", 12))]
    np.testing.assert_allclose(batch[0], alone[0], atol=1e-5)
    np.testing.assert_allclose(batch[1], alone[1], atol=1e-5)


@pytest.mark.parametrize("name", [n for n in SCHEDULERS if n != "default"])
def test_every_scheduler_sets_and_generates(tiny: StableDiffusionPipeline, name: str) -> None:
    original = tiny.scheduler
    try:
        set_scheduler(tiny, name)
        assert type(tiny.scheduler) is SCHEDULERS[name]
        assert tiny.scheduler.config.beta_schedule == "scaled_linear"  # schedule kept
        images = _generate(tiny, ["a red car"], [3])
        assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
    finally:
        tiny.scheduler = original


def test_load_pipeline_tiny_applies_the_options() -> None:
    loaded = load_pipeline("tiny", scheduler="euler_a", device="cpu", seed=3,
                           attention_slicing=True, vae_tiling=True)
    assert isinstance(loaded, LoadedPipeline) and loaded.scheduler == "euler_a"
    assert type(loaded.pipe.scheduler) is SCHEDULERS["euler_a"]
    assert loaded.pipe.vae.use_tiling and loaded.device == torch.device("cpu")
    assert _same_weights(loaded.pipe.unet, build_tiny_pipeline(seed=3).unet)
    cfg = DiffusionModelConfig(model_id="tiny", scheduler="ddim", seed=3)
    from_cfg = load_from_config(cfg, device="cpu")
    assert from_cfg.scheduler == "ddim" and from_cfg.model_id == "tiny"
    assert _same_weights(from_cfg.pipe.unet, loaded.pipe.unet)


def test_unknown_scheduler_and_dtype_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown scheduler 'heun'.*dpm\\+\\+"):
        load_pipeline("tiny", scheduler="heun", device="cpu")
    with pytest.raises(ConfigError, match="float16"):
        load_pipeline("tiny", dtype="float8", device="cpu")


def test_cpu_runs_float32_and_ignores_cpu_offload_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="cpu_offload is ignored on cpu"):
        loaded = load_pipeline("tiny", device="cpu", dtype="float16", cpu_offload=True)
    assert loaded.dtype == torch.float32
    assert loaded.pipe.unet.dtype == torch.float32
    assert loaded.pipe.text_encoder.dtype == torch.float32


def test_a_saved_pipeline_folder_loads_back_offline(tiny: StableDiffusionPipeline,
                                                   tmp_path: Path) -> None:
    tiny.save_pretrained(tmp_path / "pipe")
    loaded = load_pipeline(str(tmp_path / "pipe"), scheduler="unipc", device="cpu")
    assert isinstance(loaded.pipe, StableDiffusionPipeline)  # class from model_index.json
    assert type(loaded.pipe.scheduler) is SCHEDULERS["unipc"]
    assert _same_weights(loaded.pipe.unet, tiny.unet)
    assert _same_weights(loaded.pipe.text_encoder, tiny.text_encoder)


def test_missing_hub_model_names_id_cache_and_fixes() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        load_pipeline("someone/not-here", revision="v2", local_files_only=True, device="cpu")
    msg = str(info.value)
    assert "'someone/not-here' (revision v2)" in msg
    assert hf_constants.HF_HUB_CACHE in msg and "models--someone--not-here" in msg
    assert "hf download someone/not-here --revision v2" in msg
    assert "models.diffusion.model_id" in msg and "local_files_only: false" in msg


def test_missing_local_folder_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "pipeline"
    with pytest.raises(ModelNotFoundError) as info:
        load_pipeline(str(missing), device="cpu")
    msg = str(info.value)
    assert str(missing) in msg and "does not exist" in msg
    assert hf_constants.HF_HUB_CACHE in msg and "model_index.json" in msg


def test_folder_without_a_pipeline_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        load_pipeline(str(tmp_path), device="cpu")


def test_random_sd1_has_the_released_architecture() -> None:
    # Built on the meta device: shapes without memory. Counts are SD 1.x's published ones.
    cfg = random_configs("sd1")
    with torch.device("meta"):
        unet = UNet2DConditionModel(**cfg["unet"])
        vae = AutoencoderKL(**cfg["vae"])
        text = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(unet), count(vae), count(text)) == (859_520_964, 83_653_863, 123_060_480)
    assert cfg["vae"]["scaling_factor"] == 0.18215
    assert cfg["scheduler"]["beta_end"] == 0.012 and cfg["scheduler"]["steps_offset"] == 1


def test_unknown_random_arch_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="random-sd1"):
        build_random_pipeline("sd9")
    with pytest.raises(ConfigError, match="random-sd1"):
        load_pipeline("random-sd9", device="cpu")


@pytest.mark.slow
def test_random_sd1_pipeline_runs_one_step_at_64px(tmp_path: Path) -> None:
    # ~5 GB peak RAM, ~13 s on 2 CPU cores: run with -m slow.
    pipe = build_random_pipeline("sd1", seed=0, tokenizer_dir=tmp_path)
    assert pipe.vae_scale_factor == 8 and pipe.unet.config.sample_size == 64
    out = pipe("a car", num_inference_steps=1, height=64, width=64, output_type="np",
               generator=torch.Generator().manual_seed(0))
    assert np.asarray(out.images).shape == (1, 64, 64, 3)


def test_scheduler_names_match_the_config() -> None:
    import typing

    from segloop.config import SCHEDULER_NAMES, DiffusionModelConfig
    from segloop.models.diffusion import SCHEDULERS

    literal = DiffusionModelConfig.model_fields["scheduler"].annotation
    assert tuple(SCHEDULERS) == SCHEDULER_NAMES == typing.get_args(literal)
