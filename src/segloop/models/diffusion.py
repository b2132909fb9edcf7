"""Stable Diffusion pipelines through diffusers: tiny and random builders, safe loading.

Models (``models.diffusion.model_id``):

* ``tiny``: a real ``StableDiffusionPipeline`` from tiny seeded random parts (a 2-level
  32/64-channel UNet, a 2-level VAE, a 2-layer 32-wide CLIP text encoder and segloop's own
  514-token tokenizer). Default output is 32x32 pixels (16x16 latents); 2 steps take a
  fraction of a second on a CPU. For tests and plumbing checks: its images are noise.
* ``random-sd1``: the Stable Diffusion 1.x architecture (859.5M-parameter UNet, 83.7M VAE,
  CLIP ViT-L/14 text encoder: 123.1M) with *random* weights and SD's PNDM schedule. For
  timing benchmarks only: compute does not depend on weight values, the images are noise.
  4.3 GB of weights in float32.
* anything else: a hub id or a local folder, read with ``DiffusionPipeline.from_pretrained``
  (which picks the SD 1.x / 2.x / SDXL class from ``model_index.json``), offline unless
  ``local_files_only`` is false. Missing weights raise :class:`ModelNotFoundError`.

Every pipeline returned by :func:`load_pipeline` has its progress bar disabled; on CPU it
always runs float32.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
)
from diffusers.utils import is_accelerate_available
from huggingface_hub.errors import HFValidationError
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from segloop.devices import DTYPES, pick_device, pick_dtype
from segloop.errors import ConfigError, ModelNotFoundError
from segloop.models.clip import (
    TINY_BOS_ID,
    TINY_EOS_ID,
    local_model_path,
    not_found_error,
    tiny_text_config,
    tiny_tokenizer,
)
from segloop.models.seeding import seeded

if TYPE_CHECKING:
    from segloop.config import DiffusionModelConfig

#: ``models.diffusion.scheduler`` names -> diffusers scheduler classes (None: keep the
#: pipeline's own). The order matches ``segloop.config.SCHEDULER_NAMES``.
SCHEDULERS: dict[str, type | None] = {
    "default": None,
    "pndm": PNDMScheduler,
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "lms": LMSDiscreteScheduler,
    "unipc": UniPCMultistepScheduler,
}
#: Architectures :func:`build_random_pipeline` knows.
ARCHES: tuple[str, ...] = ("sd1",)
#: Stable Diffusion's training noise schedule (its ``scheduler_config.json``).
SD_SCHEDULE: dict[str, Any] = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000, "skip_prk_steps": True, "steps_offset": 1,
    "set_alpha_to_one": False,
}
_PIPELINE_FOLDER = ("a diffusers pipeline (model_index.json plus unet/, vae/, text_encoder/, "
                    "tokenizer/ and scheduler/)")


@dataclass(frozen=True)
class LoadedPipeline:
    """A ready pipeline: ``pipe`` on ``device`` (or offloaded to it) with weights in
    ``dtype``; ``scheduler`` is the :data:`SCHEDULERS` name that was applied."""

    pipe: DiffusionPipeline
    model_id: str
    revision: str | None
    scheduler: str
    device: torch.device
    dtype: torch.dtype


def tiny_configs() -> dict[str, dict[str, Any]]:
    """Constructor arguments of the tiny pipeline's parts: ``unet``, ``vae`` (diffusers
    model kwargs), ``text_encoder`` (``CLIPTextConfig`` kwargs) and ``scheduler``."""
    return {
        "unet": {"sample_size": 16, "in_channels": 4, "out_channels": 4,
                 "block_out_channels": (32, 64), "layers_per_block": 1,
                 "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
                 "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
                 "cross_attention_dim": 32, "attention_head_dim": (2, 4),
                 "norm_num_groups": 32},
        "vae": {"sample_size": 32, "in_channels": 3, "out_channels": 3,
                "block_out_channels": (32, 64), "layers_per_block": 1,
                "down_block_types": ("DownEncoderBlock2D",) * 2,
                "up_block_types": ("UpDecoderBlock2D",) * 2, "latent_channels": 4,
                "norm_num_groups": 32},
        "text_encoder": tiny_text_config(),
        "scheduler": dict(SD_SCHEDULE),
    }


def random_configs(arch: str = "sd1") -> dict[str, dict[str, Any]]:
    """Constructor arguments of ``arch``'s parts (keys as in :func:`tiny_configs`).

    ``sd1``: Stable Diffusion 1.x (``CompVis/stable-diffusion-v1-4``'s configs). The text
    encoder keeps CLIP ViT-L/14's 49408-token vocabulary but takes its BOS/EOS/PAD ids
    from segloop's tiny tokenizer (the one these pipelines use), whose ids are all < 514.
    Unknown ``arch`` -> :class:`ConfigError`.
    """
    if arch not in ARCHES:
        raise ConfigError(f"models.diffusion.model_id: unknown random architecture {arch!r}; "
                          f"use one of {[f'random-{a}' for a in ARCHES]}")
    return {
        "unet": {"sample_size": 64, "in_channels": 4, "out_channels": 4,
                 "block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2,
                 "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 "cross_attention_dim": 768, "attention_head_dim": 8},
        "vae": {"sample_size": 512, "in_channels": 3, "out_channels": 3,
                "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2,
                "down_block_types": ("DownEncoderBlock2D",) * 4,
                "up_block_types": ("UpDecoderBlock2D",) * 4, "latent_channels": 4,
                "scaling_factor": 0.18215},
        "text_encoder": {"hidden_size": 768, "intermediate_size": 3072,
                         "num_hidden_layers": 12, "num_attention_heads": 12,
                         "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                         "vocab_size": 49408, "bos_token_id": TINY_BOS_ID,
                         "eos_token_id": TINY_EOS_ID, "pad_token_id": TINY_EOS_ID},
        "scheduler": dict(SD_SCHEDULE),
    }


def assemble(configs: dict[str, dict[str, Any]], tokenizer: CLIPTokenizer, seed: int
             ) -> StableDiffusionPipeline:
    """A ``StableDiffusionPipeline`` (CPU, float32, eval mode, no safety checker) from
    ``configs`` (see :func:`tiny_configs`) with weights drawn from ``seed``; the global
    RNG is left untouched."""
    with seeded(seed):
        unet = UNet2DConditionModel(**configs["unet"]).eval()
        vae = AutoencoderKL(**configs["vae"]).eval()
        text_encoder = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])).eval()
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=PNDMScheduler(**configs["scheduler"]), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_pipeline(seed: int = 0, tokenizer_dir: str | Path | None = None
                        ) -> StableDiffusionPipeline:
    """The tiny pipeline (module docstring); same ``seed`` -> identical weights.

    The tokenizer is written to ``tokenizer_dir`` or, if None, to
    ``~/.cache/segloop/tiny-clip-tokenizer``. ``pipe(prompt, num_inference_steps=2)``
    returns 32x32 images by default.
    """
    return assemble(tiny_configs(), tiny_tokenizer(tokenizer_dir), seed)


def build_random_pipeline(arch: str = "sd1", seed: int = 0,
                          tokenizer_dir: str | Path | None = None
                          ) -> StableDiffusionPipeline:
    """``arch`` ("sd1") with random weights from ``seed``: for timing benchmarks only.

    Compute per step does not depend on weight values, so timings match the released
    model; its images are meaningless. Weights take 4.3 GB in float32 (about 5 GB peak
    RAM); building takes ~10 s on a 2-core CPU. Unknown ``arch`` -> :class:`ConfigError`.
    """
    configs = random_configs(arch)
    return assemble(configs, tiny_tokenizer(tokenizer_dir), seed)


def _dtype_kwarg() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (deprecating the old name)."""
    try:
        from diffusers.utils import deprecation_utils
    except ImportError:  # pragma: no cover - very old diffusers
        return "torch_dtype"
    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _from_pretrained(model_id: str, revision: str | None, local_files_only: bool,
                     dtype: torch.dtype) -> DiffusionPipeline:
    local = local_model_path(model_id)
    source = str(local) if local is not None else model_id
    kwargs: dict[str, Any] = {"revision": revision, "local_files_only": local_files_only,
                              _dtype_kwarg(): dtype,
                              "low_cpu_mem_usage": is_accelerate_available()}
    def missing(err: BaseException | None) -> ModelNotFoundError:
        return not_found_error("diffusion pipeline", model_id, revision=revision,
                               local_files_only=local_files_only,
                               config_key="models.diffusion", folder_holds=_PIPELINE_FOLDER,
                               error=err)

    if local is not None and not local.is_dir():
        raise missing(None)
    try:
        return DiffusionPipeline.from_pretrained(source, **kwargs)
    except (OSError, HFValidationError) as err:
        raise missing(err) from err


def _scheduler_class(name: str) -> type | None:
    if name not in SCHEDULERS:
        raise ConfigError(f"models.diffusion.scheduler: unknown scheduler {name!r}; use one "
                          f"of {list(SCHEDULERS)}")
    return SCHEDULERS[name]


def set_scheduler(pipe: DiffusionPipeline, name: str) -> None:
    """Replace ``pipe.scheduler`` by scheduler ``name`` built from the current one's config
    (its noise schedule is kept); "default" keeps it. Unknown name -> ConfigError."""
    cls = _scheduler_class(name)
    if cls is not None:
        pipe.scheduler = cls.from_config(pipe.scheduler.config)


def load_pipeline(
    model_id: str,
    *,
    revision: str | None = None,
    local_files_only: bool = True,
    scheduler: str = "default",
    device: str = "auto",
    dtype: str = "float32",
    attention_slicing: bool = False,
    vae_tiling: bool = False,
    cpu_offload: bool = False,
    seed: int = 0,
) -> LoadedPipeline:
    """Build or load ``model_id`` ("tiny", "random-sd1", a hub id or a local folder).

    ``device``: "auto" (cuda, then mps, then cpu) or explicit; ``dtype`` ("float32",
    "float16", "bfloat16") applies on GPUs only, CPU always runs float32. ``cpu_offload``
    needs CUDA and ``accelerate``; on other devices it is ignored with a warning. ``seed``
    only affects the tiny and random pipelines. Raises :class:`ConfigError` for bad names
    and :class:`ModelNotFoundError` when the weights are not on this machine.
    """
    _scheduler_class(scheduler)  # fail on a bad name before loading gigabytes
    if dtype not in DTYPES:
        raise ConfigError(f"base.dtype: unknown dtype {dtype!r}; use one of {list(DTYPES)}")
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    offload = cpu_offload and torch_device.type == "cuda"
    if cpu_offload and not offload:
        warnings.warn(f"models.diffusion.cpu_offload is ignored on {torch_device.type}: it "
                      "only helps on CUDA GPUs (set it to false to silence this)",
                      UserWarning, stacklevel=2)
    if offload and not is_accelerate_available():
        raise ConfigError("models.diffusion.cpu_offload needs the `accelerate` package: "
                          "install it (pip install accelerate) or set cpu_offload: false")

    if model_id == "tiny":
        pipe = build_tiny_pipeline(seed)
    elif model_id.startswith("random-") and local_model_path(model_id) is None:
        pipe = build_random_pipeline(model_id.removeprefix("random-"), seed)
    else:
        pipe = _from_pretrained(model_id, revision, local_files_only, torch_dtype)

    set_scheduler(pipe, scheduler)
    if offload:
        pipe.to(dtype=torch_dtype)
        pipe.enable_model_cpu_offload(device=torch_device)
    elif pipe.dtype == torch_dtype:  # a cast to the same dtype only earns a diffusers warning
        pipe.to(device=torch_device)
    else:
        pipe.to(device=torch_device, dtype=torch_dtype)
    if attention_slicing:
        pipe.enable_attention_slicing()
    if vae_tiling:
        vae = getattr(pipe, "vae", None)
        if vae is None or not hasattr(vae, "enable_tiling"):
            raise ConfigError(f"models.diffusion.vae_tiling: {type(pipe).__name__} has no "
                              "tileable VAE; set vae_tiling: false")
        vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return LoadedPipeline(pipe, model_id, revision, scheduler, torch_device, torch_dtype)


def load_from_config(cfg: DiffusionModelConfig, device: str = "auto",
                     dtype: str = "float32") -> LoadedPipeline:
    """:func:`load_pipeline` with the fields of ``models.diffusion`` (``cfg``); ``device``
    and ``dtype`` come from ``base``."""
    return load_pipeline(cfg.model_id, revision=cfg.revision,
                         local_files_only=cfg.local_files_only, scheduler=cfg.scheduler,
                         device=device, dtype=dtype, attention_slicing=cfg.attention_slicing,
                         vae_tiling=cfg.vae_tiling, cpu_offload=cfg.cpu_offload, seed=cfg.seed)
