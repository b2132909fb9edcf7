"""``models``: SAM, Stable Diffusion and CLIP (where the weights are, precision)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from segloop.config.section import Section


class SamModelConfig(Section):
    """Segment Anything: segment-anything's builders, weights loaded safely (weights only)."""

    variant: Literal["vit_b", "vit_l", "vit_h", "tiny"] = Field(
        "vit_b", description="vit_b/vit_l/vit_h: the released models (need a checkpoint); "
        "tiny: a small random SAM of the same classes, for tests and plumbing checks")
    checkpoint: str | None = Field(
        None, description="Path of the checkpoint (.pth); else $SEGLOOP_SAM_CHECKPOINT, else "
        "~/.cache/segloop/sam/<official file name>")
    seed: int = Field(0, ge=0, description="weights of the tiny variant")


SCHEDULER_NAMES = ("default", "pndm", "ddim", "euler", "euler_a", "dpm++", "lms", "unipc")


class DiffusionModelConfig(Section):
    """Stable Diffusion through diffusers (1.x, 2.x; SDXL where the same code path serves)."""

    model_id: str = Field(
        "CompVis/stable-diffusion-v1-4", description="hub id or local folder of a diffusers "
        "pipeline; 'tiny': a small random pipeline built offline (tests and plumbing checks)")
    revision: str | None = None
    local_files_only: bool = Field(True, description="never download; fail with where to "
                                   "put the weights instead")
    scheduler: Literal["default", "pndm", "ddim", "euler", "euler_a", "dpm++", "lms",
                       "unipc"] = Field("default", description="default: the pipeline's own")
    attention_slicing: bool = Field(False, description="less memory, a little slower")
    vae_tiling: bool = Field(False, description="decode large images in tiles")
    cpu_offload: bool = Field(False, description="GPU machines only: keep idle parts on CPU")
    seed: int = Field(0, ge=0, description="weights of the tiny pipeline")


class ClipModelConfig(Section):
    """CLIP through transformers, for the synthetic-image filter and the SAM+CLIP baseline."""

    model_id: str | None = Field(
        None, description="hub id or local folder (e.g. openai/clip-vit-base-patch32); "
        "'tiny': a small random CLIP built offline; null: no CLIP (filter off)")
    local_files_only: bool = True


class ModelsConfig(Section):
    sam: SamModelConfig = SamModelConfig()
    diffusion: DiffusionModelConfig = DiffusionModelConfig()
    clip: ClipModelConfig = ClipModelConfig()
