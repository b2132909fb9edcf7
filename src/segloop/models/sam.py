"""Segment Anything models: segment-anything's own builders, a tiny variant, safe loading.

Architecture and weights are separate steps (as in segment-anything's ``build_sam.py``):
:func:`build_sam` makes the ``Sam`` module with random weights, :func:`load_sam` then
fills it from a checkpoint read with ``torch.load(weights_only=True)`` (no pickled code
runs). Variants:

* ``vit_b`` / ``vit_l`` / ``vit_h``: segment-anything's ``sam_model_registry`` builders
  (1024x1024 input, 64x64x256 image embedding, 256x256 low-res masks).
* ``tiny``: the same classes (``ImageEncoderViT``, ``PromptEncoder``, ``MaskDecoder``,
  ``TwoWayTransformer``) at 128x128 input with a 2-block, 32-wide encoder and seeded random
  weights; the decoder keeps SAM's 256-wide tokens, so mask embeddings are 4 x 256 = 1024
  floats as for the real models. For tests and plumbing checks only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from segment_anything.build_sam import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from segloop.devices import pick_device, pick_dtype
from segloop.errors import ConfigError, ModelNotFoundError
from segloop.models.seeding import seeded

CHECKPOINT_ENV = "SEGLOOP_SAM_CHECKPOINT"
CACHE_DIR = Path("~/.cache/segloop/sam")
DOWNLOAD_BASE = "https://dl.fbaipublicfiles.com/segment_anything"

#: Official checkpoint file names (segment-anything's README).
CHECKPOINT_FILES: dict[str, str] = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
VARIANTS: tuple[str, ...] = ("vit_b", "vit_l", "vit_h", "tiny")
PROMPT_EMBED_DIM = 256


@dataclass(frozen=True)
class LoadedSam:
    """A ready model: ``model`` in eval mode on ``device`` with parameters in ``dtype``.

    ``checkpoint`` is the file the weights came from (None for ``tiny``).
    """

    model: Sam
    variant: str
    checkpoint: str | None
    device: torch.device
    dtype: torch.dtype


def build_sam(variant: str, *, seed: int = 0) -> Sam:
    """The architecture of ``variant`` with random weights (seeded), in eval mode, on CPU."""
    if variant not in VARIANTS:
        raise ConfigError(f"models.sam.variant: unknown SAM variant {variant!r}; use one of "
                          f"{list(VARIANTS)}")
    with seeded(seed):
        sam = _build_tiny() if variant == "tiny" else sam_model_registry[variant](checkpoint=None)
    return sam.eval()


def _build_tiny() -> Sam:
    image_size, patch = 128, 16
    grid = image_size // patch
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size, patch_size=patch, embed_dim=32, depth=2, num_heads=2,
            mlp_ratio=2.0, out_chans=PROMPT_EMBED_DIM, qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            window_size=4, global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_EMBED_DIM, image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size), mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM,
                                          mlp_dim=64, num_heads=8),
            transformer_dim=PROMPT_EMBED_DIM, iou_head_depth=3, iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def resolve_checkpoint(variant: str, checkpoint: str | os.PathLike[str] | None) -> Path:
    """The checkpoint file to load for ``variant``.

    Looks at ``checkpoint`` (config), else ``$SEGLOOP_SAM_CHECKPOINT``, else
    ``~/.cache/segloop/sam/<official name>``. Raises :class:`ModelNotFoundError` naming the
    model, every place tried and where to download the weights.
    """
    tried: list[str] = []
    if checkpoint:
        candidates = [(Path(checkpoint).expanduser(), "models.sam.checkpoint")]
    elif os.environ.get(CHECKPOINT_ENV):
        candidates = [(Path(os.environ[CHECKPOINT_ENV]).expanduser(), f"${CHECKPOINT_ENV}")]
    else:
        candidates = [((CACHE_DIR / CHECKPOINT_FILES[variant]).expanduser(), "default cache")]
        tried.append(f"models.sam.checkpoint (unset), ${CHECKPOINT_ENV} (unset)")
    for path, origin in candidates:
        if path.is_file():
            return path
        tried.append(f"{path} ({origin}: {'a folder' if path.is_dir() else 'no such file'})")
    raise ModelNotFoundError(
        f"SAM {variant} weights not found; looked at: {'; '.join(tried)}. Download "
        f"{DOWNLOAD_BASE}/{CHECKPOINT_FILES[variant]} on a machine with internet, copy it "
        f"here and set models.sam.checkpoint (or ${CHECKPOINT_ENV}) to its path, or put it "
        f"at {CACHE_DIR / CHECKPOINT_FILES[variant]}"
    )


def read_state_dict(path: str | os.PathLike[str], variant: str) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, read with ``weights_only=True`` onto the CPU."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (pickle, zip and torch errors alike)
        raise ModelNotFoundError(
            f"SAM {variant} checkpoint {path} cannot be read as weights ({type(err).__name__}: "
            f"{str(err)[:200]}); the file is corrupt, truncated or not a state dict: download "
            f"{DOWNLOAD_BASE}/{CHECKPOINT_FILES.get(variant, '')} again"
        ) from err
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ModelNotFoundError(f"SAM {variant} checkpoint {path} holds a "
                                 f"{type(state).__name__}, not a state dict of tensors")
    return state


def load_weights(sam: Sam, path: str | os.PathLike[str], variant: str) -> None:
    """Fill ``sam`` from the checkpoint at ``path``; mismatches name the likely wrong variant."""
    state = read_state_dict(path, variant)
    missing, unexpected = sam.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelNotFoundError(
            f"SAM checkpoint {path} does not fit the {variant} architecture ({len(missing)} "
            f"missing keys, e.g. {missing[:2]}; {len(unexpected)} unexpected, e.g. "
            f"{unexpected[:2]}); set models.sam.variant to the variant the file was made for"
        )


def in_dtype(sam: Sam, dtype: torch.dtype) -> Sam:
    """``sam`` in eval mode with its weights in ``dtype``, except the prompt encoder, which
    stays float32: segment-anything casts point coordinates to float32 before its random
    Fourier features, so a half-precision prompt encoder fails (found on a GPU lease);
    callers cast its outputs to ``dtype``."""
    sam = sam.to(dtype=dtype).eval()
    sam.prompt_encoder.float()
    return sam


def load_sam(
    variant: str,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    device: str = "auto",
    dtype: str = "float32",
    seed: int = 0,
) -> LoadedSam:
    """Build and load SAM ``variant``, ready for inference.

    ``device`` is "auto" (cuda, then mps, then cpu) or explicit; ``dtype`` applies on GPUs
    only (CPU always runs float32). ``tiny`` needs no checkpoint (random weights from
    ``seed``); the released variants need one (see :func:`resolve_checkpoint`).
    """
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    path: Path | None = None
    if variant != "tiny":
        path = resolve_checkpoint(variant, checkpoint)
    sam = build_sam(variant, seed=seed)
    if path is not None:
        load_weights(sam, path, variant)
    sam = in_dtype(sam.to(device=torch_device), torch_dtype)
    return LoadedSam(sam, variant, None if path is None else str(path), torch_device,
                     torch_dtype)
