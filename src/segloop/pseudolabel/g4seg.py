"""G4Seg: refine a coarse per-class foreground map with one mask-conditioned SD step.

G4Seg, Zhang et al. 2025; docs/algorithms.md §4. No training; one class at a time:

1. resize the image to ``resolution`` (square), VAE-encode ``z0 = mean * scaling_factor``,
   noise once to ``t`` (:func:`noise_latent`);
2. ONE UNet call with the prompt ``template.format(c=class_name)`` while the binary mask
   ``coarse > 0.5`` (the paper's eq. 3-4 use ``S_c[i] = 1``) is injected into every self-
   and cross-attention layer (:func:`segloop.models.attention_mask.inject_mask`; the
   cross-attention targets the class-name tokens); no classifier-free guidance;
3. predict ``x0`` in one step (:func:`predict_x0`) and decode it: the generated image;
4. dense CLIP features of the (resized) original and the generated image
   (:func:`dense_clip_features`); for each generated-image patch the most cosine-similar
   original patch (:func:`correspondence`), spread to pixels (:func:`patch_delta_to_pixels`);
5. ``S*[j] = beta S[j] + (1 - beta) S[delta_j]`` only where ``band[0] <= S[j] <= band[1]``
   (:func:`mix`), at the coarse map's own resolution.

The noise is drawn from ``torch.Generator().manual_seed(seed)`` on the CPU for every class,
so a rerun gives the same result on the same device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segloop.errors import ConfigError, DataError
from segloop.models.attention_mask import inject_mask

#: Prediction types :func:`predict_x0` understands.
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class G4SegSettings:
    """G4Seg's settings (Zhang et al. 2025, section III and appendix).

    * ``timestep``: the single noise level, of the scheduler's 1000 training steps (paper:
      400, best of 100..700 in its Fig. 4).
    * ``w_self`` / ``w_cross``: injection weights, added to the *scaled* attention logits
      (see :mod:`segloop.models.attention_mask`; the paper's eq. 5 ``alpha`` is
      ``w * sqrt(head_dim)``). The paper only says it "follows DenseDiffusion"; the
      defaults are DenseDiffusion's demo defaults ``w^c = 1.0`` and ``w^s = 0.3``.
      DenseDiffusion's modulation is relative to each row's logit range and decays as
      ``(t/1000)^5``, which G4Seg's eq. 5 does not have, so treat these as a starting
      point and record the values used.
    * ``band``: only pixels with ``band[0] <= S <= band[1]`` are updated (paper: [0.2, 0.6]
      beat [0.1, 0.7], Table III).
    * ``beta``: mixing weight of a pixel's own score; 0.8 for text-supervised
      (open-vocabulary) seeds, 0.9 for CAM-style weakly supervised seeds.
    * ``resolution``: side of the square image fed to the VAE (paper: 512); a multiple of 8.
    * ``clip_size``: side of the square image fed to CLIP; None = the model's own
      ``image_size``; other values interpolate CLIP's position embeddings (finer grid).
    * ``template``: the prompt, with ``{c}`` for the class name (paper: "A photo of {c}").
    * ``seed``: seed of the CPU generator that draws the noise.
    """

    timestep: int = 400
    w_self: float = 0.3
    w_cross: float = 1.0
    band: tuple[float, float] = (0.2, 0.6)
    beta: float = 0.8
    resolution: int = 512
    clip_size: int | None = None
    template: str = "A photo of {c}"
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.timestep, int) or self.timestep < 0:
            raise ConfigError(f"g4seg.timestep must be an int >= 0 (paper: 400); got "
                              f"{self.timestep!r}")
        for name in ("w_self", "w_cross"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"g4seg.{name} must be a finite number; got {value!r}")
        band = tuple(self.band)
        if (len(band) != 2 or not all(isinstance(b, int | float) for b in band)
                or not 0.0 <= band[0] <= band[1] <= 1.0):
            raise ConfigError(f"g4seg.band must be (low, high) with 0 <= low <= high <= 1 "
                              f"(paper: (0.2, 0.6)); got {self.band!r}")
        if not isinstance(self.beta, int | float) or not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"g4seg.beta must be in [0, 1] (0.8 for text-supervised seeds, "
                              f"0.9 for CAM seeds); got {self.beta!r}")
        if not isinstance(self.resolution, int) or self.resolution < 8 or self.resolution % 8:
            raise ConfigError(f"g4seg.resolution must be a positive multiple of 8 (paper: "
                              f"512); got {self.resolution!r}")
        if self.clip_size is not None and (not isinstance(self.clip_size, int)
                                           or self.clip_size < 1):
            raise ConfigError(f"g4seg.clip_size must be a positive int or None (the CLIP "
                              f"model's own size); got {self.clip_size!r}")
        if "{c}" not in self.template:
            raise ConfigError(f"g4seg.template must contain {{c}} where the class name goes "
                              f"(paper: 'A photo of {{c}}'); got {self.template!r}")
        try:
            self.template.format(c="x")
        except (IndexError, KeyError, ValueError) as err:
            raise ConfigError(f"g4seg.template {self.template!r} is not a format string with "
                              f"only {{c}} in it ({err}); escape other braces as {{{{ }}}}"
                              ) from err


# --- diffusion steps -----------------------------------------------------------------------


def _alpha_bar(scheduler: Any, t: int) -> float:
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        raise ConfigError(f"{type(scheduler).__name__} has no alphas_cumprod: G4Seg needs a "
                          "DDPM-type noise schedule (PNDM, DDIM, Euler, DPM++, ...)")
    if not isinstance(t, int | np.integer) or not 0 <= int(t) < len(alphas):
        raise ConfigError(f"g4seg.timestep {t!r} is outside the scheduler's "
                          f"[0, {len(alphas) - 1}] training timesteps (paper: 400)")
    return float(alphas[int(t)])


def noise_latent(scheduler: Any, z0: torch.Tensor, t: int,
                 generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
    """``z_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps`` with ``a_t = scheduler.alphas_cumprod[t]``.

    ``z0``: (B, C, h, w) float latents. ``eps`` is ``noise`` (same shape) when given, else
    drawn in float32 on the CPU from ``generator`` (device-independent). Computed by hand,
    not with ``scheduler.add_noise`` (Euler-type schedulers scale by sigma there). Returns
    ``z0``'s shape, dtype and device.
    """
    a = _alpha_bar(scheduler, t)
    if noise is None:
        noise = torch.randn(z0.shape, generator=generator, dtype=torch.float32)
    elif noise.shape != z0.shape:
        raise DataError(f"noise has shape {tuple(noise.shape)}, latents {tuple(z0.shape)}: "
                        "they must match")
    z_t = math.sqrt(a) * z0.float() + math.sqrt(1.0 - a) * noise.to(z0.device, torch.float32)
    return z_t.to(z0.dtype)


def predict_x0(scheduler: Any, z_t: torch.Tensor, model_output: torch.Tensor, t: int
               ) -> torch.Tensor:
    """One-step estimate of the clean latent from the UNet's output at timestep ``t``.

    ``scheduler.config.prediction_type`` "epsilon": ``x0 = (z_t - sqrt(1-a) eps) / sqrt(a)``;
    "v_prediction": ``x0 = sqrt(a) z_t - sqrt(1-a) v``; anything else -> ConfigError.
    Shapes (B, C, h, w); computed in float32, returned in ``z_t``'s dtype.
    """
    kind = getattr(getattr(scheduler, "config", None), "prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ConfigError(f"scheduler prediction_type {kind!r} is not supported by G4Seg's "
                          f"one-step x0 estimate; supported: {list(PREDICTION_TYPES)}")
    if model_output.shape != z_t.shape:
        raise DataError(f"model output has shape {tuple(model_output.shape)}, latents "
                        f"{tuple(z_t.shape)}: they must match")
    a = _alpha_bar(scheduler, t)
    z, out = z_t.float(), model_output.float().to(z_t.device)
    if kind == "epsilon":
        x0 = (z - math.sqrt(1.0 - a) * out) / math.sqrt(a)
    else:
        x0 = math.sqrt(a) * z - math.sqrt(1.0 - a) * out
    return x0.to(z_t.dtype)


def class_token_indices(tokenizer: Any, template: str, class_name: str) -> list[int]:
    """Positions of ``class_name``'s tokens in the tokenised ``template.format(c=...)``.

    Positions count the BOS token (the text encoder's sequence). The class name is
    tokenised alone (no special tokens) and searched for as a contiguous run starting no
    earlier than the end of the template's prefix (the text before ``{c}``, tokenised with
    BOS), so a name that also occurs in the prefix ("a photo of a {c}" with "a") is matched
    at its own place. The prefix should end at a word boundary (as in "A photo of {c}").
    :class:`DataError` when the name is absent (e.g. truncated past the max length).
    """
    if not class_name.strip():
        raise DataError("class name is empty; pass the class's text name (e.g. 'dog')")
    prompt = template.format(c=class_name)
    max_length = int(getattr(tokenizer, "model_max_length", 77))
    ids = tokenizer(prompt, truncation=True, max_length=max_length).input_ids
    name_ids = tokenizer(class_name, add_special_tokens=False).input_ids
    lead = list(tokenizer(template[: template.index("{c}")].format()).input_ids)
    eos = getattr(tokenizer, "eos_token_id", None)
    if lead and eos is not None and lead[-1] == eos:
        lead = lead[:-1]  # the prefix's tokens with BOS: the class name starts right after
    start_min = len(lead)
    n = len(name_ids)
    for start in range(start_min, len(ids) - n + 1):
        if list(ids[start : start + n]) == list(name_ids):
            return list(range(start, start + n))
    raise DataError(f"the tokens of class name {class_name!r} were not found in the "
                    f"tokenised prompt {prompt!r} (truncated to {max_length} tokens?); "
                    "shorten the class name or the template")


# --- CLIP correspondence --------------------------------------------------------------------


def _clip_parts(clip: Any, processor: Any = None) -> tuple[Any, Any, torch.device]:
    """(CLIPModel, image processor, device) from a ClipScorer, a (model, processor) pair, or
    a model plus a CLIPProcessor / CLIPImageProcessor."""
    if hasattr(clip, "model") and hasattr(clip, "image_processor"):  # ClipScorer
        return clip.model, clip.image_processor, torch.device(clip.device)
    if isinstance(clip, tuple | list) and len(clip) == 2:
        clip, processor = clip
    if processor is None or not hasattr(clip, "vision_model"):
        raise ConfigError(f"G4Seg needs a ClipScorer or a (CLIPModel, CLIPProcessor) pair; got "
                          f"{type(clip).__name__} and {type(processor).__name__}")
    image_processor = getattr(processor, "image_processor", processor)
    return clip, image_processor, next(clip.parameters()).device


@torch.inference_mode()
def dense_clip_features(clip_model: Any, processor_or_image_processor: Any,
                        image: np.ndarray, size: int | None = None) -> torch.Tensor:
    """(gh, gw, d) float32 L2-normalised dense CLIP features of an (H, W, 3) uint8 image.

    ``clip_model``: a ``transformers.CLIPModel`` (its processor or image processor as the
    second argument) or a :class:`segloop.models.clip.ClipScorer` (second argument ignored).
    The whole image is resized (bicubic, no crop) to ``size x size`` (None: the vision
    tower's ``image_size``; another size interpolates the position embeddings) and
    normalised with the processor's ``image_mean`` / ``image_std``. Features: the vision
    tower's last-layer patch tokens (CLS dropped) passed through ``post_layernorm`` and
    ``visual_projection``, i.e. the head CLIP applies to its CLS token, so d =
    ``projection_dim``; grid ``gh = gw = size // patch_size``, row-major. On the CPU.
    """
    model, image_processor, device = _clip_parts(clip_model, processor_or_image_processor)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise DataError(f"image has shape {array.shape} and dtype {array.dtype}; expected "
                        "(H, W, 3) uint8 RGB")
    vision = model.config.vision_config
    native, patch = int(vision.image_size), int(vision.patch_size)
    side = native if size is None else int(size)
    if side < patch or side % patch:
        raise ConfigError(f"CLIP input size {side} must be a positive multiple of the patch "
                          f"size {patch}")
    resized = np.asarray(Image.fromarray(array).resize((side, side), Image.BICUBIC))
    mean = torch.tensor(image_processor.image_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(image_processor.image_std, dtype=torch.float32)[:, None, None]
    pixels = (torch.from_numpy(resized.copy()).permute(2, 0, 1).float() / 255.0 - mean) / std
    dtype = next(model.parameters()).dtype
    out = model.vision_model(pixel_values=pixels[None].to(device, dtype),
                             interpolate_pos_encoding=side != native)
    tokens = out.last_hidden_state[0, 1:]
    features = model.visual_projection(model.vision_model.post_layernorm(tokens))
    grid = side // patch
    return F.normalize(features.float(), dim=-1).reshape(grid, grid, -1).cpu()


def correspondence(f_orig: torch.Tensor, f_gen: torch.Tensor) -> torch.Tensor:
    """(h, w, d) x 2 -> (h*w,) int64: for each generated location j (row-major), the
    row-major index of the original location with the highest cosine similarity (ties: the
    lowest index). Features need not be normalised."""
    if f_orig.ndim != 3 or f_orig.shape != f_gen.shape:
        raise DataError(f"feature maps have shapes {tuple(f_orig.shape)} and "
                        f"{tuple(f_gen.shape)}; expected two equal (h, w, d)")
    d = f_orig.shape[-1]
    orig = F.normalize(f_orig.reshape(-1, d).float(), dim=-1)
    gen = F.normalize(f_gen.reshape(-1, d).float(), dim=-1)
    return (gen @ orig.T).argmax(dim=1).to(torch.int64)


def _starts(n_cells: int, n_pixels: int) -> np.ndarray:
    """First pixel of each of ``n_cells`` cells over ``n_pixels`` (plus the end):
    ``ceil(c * n_pixels / n_cells)``, so pixel y is in cell ``floor(y * n_cells / n_pixels)``."""
    return -(-np.arange(n_cells + 1, dtype=np.int64) * n_pixels // n_cells)


def patch_delta_to_pixels(delta: np.ndarray | torch.Tensor, grid_hw: tuple[int, int],
                          image_hw: tuple[int, int]) -> np.ndarray:
    """A patch-grid correspondence -> an (H, W) int64 map of flat pixel indices.

    ``delta``: (gh*gw,) row-major patch indices (generated patch p -> original patch
    ``delta[p]``). The image's rows are split into ``gh`` bands, pixel row y in band
    ``floor(y * gh / H)`` (likewise columns), so bands differ by at most one pixel. Pixel
    ``(y, x)`` in patch p, at offset ``(dy, dx)`` from p's top-left pixel, maps to the pixel
    at the same offset from the top-left pixel of patch ``delta[p]``; an offset past the
    target patch's last row/column is clamped to it (unequal bands); a target patch with no
    pixels (grid finer than the image) gives its first pixel position, clipped to the image.
    """
    gh, gw = int(grid_hw[0]), int(grid_hw[1])
    height, width = int(image_hw[0]), int(image_hw[1])
    d = np.asarray(delta.cpu() if isinstance(delta, torch.Tensor) else delta).astype(np.int64)
    if d.shape != (gh * gw,):
        raise DataError(f"patch correspondence has shape {d.shape}; expected ({gh * gw},) for "
                        f"a {gh}x{gw} grid")
    if d.size and (d.min() < 0 or d.max() >= gh * gw):
        raise DataError(f"patch correspondence holds indices outside [0, {gh * gw - 1}]")
    if min(gh, gw, height, width) < 1:
        raise DataError(f"grid {grid_hw} and image {image_hw} must be positive")
    ys, xs = np.arange(height), np.arange(width)
    rows, cols = ys * gh // height, xs * gw // width
    row_starts, col_starts = _starts(gh, height), _starts(gw, width)
    dy, dx = ys - row_starts[rows], xs - col_starts[cols]
    target = d[rows[:, None] * gw + cols[None, :]]
    t_rows, t_cols = target // gw, target % gw
    last_y = np.maximum(row_starts[t_rows + 1] - 1, row_starts[t_rows])
    last_x = np.maximum(col_starts[t_cols + 1] - 1, col_starts[t_cols])
    y = np.minimum(np.minimum(row_starts[t_rows] + dy[:, None], last_y), height - 1)
    x = np.minimum(np.minimum(col_starts[t_cols] + dx[None, :], last_x), width - 1)
    return (y * width + x).astype(np.int64)


def mix(s: np.ndarray, delta_map: np.ndarray, band: tuple[float, float], beta: float
        ) -> np.ndarray:
    """G4Seg's update (eq. 9 with the band filter), on one class's map.

    ``s``: (H, W) float in [0, 1]; ``delta_map``: (H, W) int64 flat indices into ``s``.
    Returns (H, W) float32 with ``beta s[j] + (1 - beta) s[delta_j]`` where ``band[0] <=
    s[j] <= band[1]`` and ``s[j]`` elsewhere. All reads are from the input ``s``; the band
    is compared in ``s``'s dtype, bounds included; the mix is computed in float64.
    """
    s = np.asarray(s)
    delta_map = np.asarray(delta_map)
    if s.ndim != 2 or not np.issubdtype(s.dtype, np.floating):
        raise DataError(f"score map has shape {s.shape} and dtype {s.dtype}; expected (H, W) "
                        "float in [0, 1]")
    if not np.isfinite(s).all() or s.min(initial=0.0) < 0 or s.max(initial=0.0) > 1:
        raise DataError(f"score map values span [{np.nanmin(s)}, {np.nanmax(s)}] or hold NaN; "
                        "expected probabilities in [0, 1]")
    if delta_map.shape != s.shape or not np.issubdtype(delta_map.dtype, np.integer):
        raise DataError(f"delta map has shape {delta_map.shape} and dtype {delta_map.dtype}; "
                        f"expected {s.shape} integers (flat pixel indices)")
    if delta_map.size and (delta_map.min() < 0 or delta_map.max() >= s.size):
        raise DataError(f"delta map holds indices outside [0, {s.size - 1}]")
    low, high = float(band[0]), float(band[1])
    if not 0.0 <= low <= high <= 1.0 or not 0.0 <= float(beta) <= 1.0:
        raise ConfigError(f"band {band} must satisfy 0 <= low <= high <= 1 and beta {beta} "
                          "must be in [0, 1]")
    flat = s.astype(np.float64)
    mixed = beta * flat + (1.0 - beta) * flat.reshape(-1)[delta_map]
    # compare in s's own dtype: float32 0.6 (0.60000002) is inside a (0.2, 0.6) band
    uncertain = (s >= np.asarray(low, s.dtype)) & (s <= np.asarray(high, s.dtype))
    return np.where(uncertain, mixed, flat).astype(np.float32)


# --- the refiner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class G4SegResult:
    """One class's refinement: ``refined`` (H, W) float32 in [0, 1]; ``generated`` the
    decoded mask-conditioned image, (R, R, 3) uint8 at ``settings.resolution``;
    ``delta_map`` (H, W) int64 flat pixel index each pixel was mixed with."""

    refined: np.ndarray
    generated: np.ndarray
    delta_map: np.ndarray


@dataclass(frozen=True)
class _Prepared:
    """Per-image work shared by all classes: the resized image, z_t and its CLIP features."""

    resized: np.ndarray
    z_t: torch.Tensor
    f_orig: torch.Tensor


class G4Seg:
    """G4Seg refinement (module docstring) with a diffusers SD pipeline and a CLIP model.

    ``pipe``: a ``StableDiffusionPipeline``-like object with ``vae``, ``unet``,
    ``text_encoder``, ``tokenizer`` and ``scheduler`` (only ``scheduler.alphas_cumprod`` and
    ``config.prediction_type`` are used). ``clip``: a :class:`ClipScorer` or a
    ``(CLIPModel, CLIPProcessor)`` pair.
    """

    def __init__(self, pipe: Any, clip: Any, settings: G4SegSettings | None = None) -> None:
        self.pipe = pipe
        self.clip_model, self.image_processor, _ = _clip_parts(clip)
        self.settings = settings if settings is not None else G4SegSettings()
        _alpha_bar(pipe.scheduler, self.settings.timestep)

    @torch.inference_mode()
    def _prepare(self, image: np.ndarray) -> _Prepared:
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise DataError(f"image has shape {array.shape} and dtype {array.dtype}; expected "
                            "(H, W, 3) uint8 RGB")
        side = self.settings.resolution
        resized = np.asarray(Image.fromarray(array).resize((side, side), Image.BICUBIC))
        vae = self.pipe.vae
        pixels = torch.from_numpy(resized.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        latent = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        z0 = (latent - shift) * vae.config.scaling_factor
        generator = torch.Generator().manual_seed(self.settings.seed)
        z_t = noise_latent(self.pipe.scheduler, z0, self.settings.timestep, generator)
        f_orig = dense_clip_features(self.clip_model, self.image_processor, resized,
                                     self.settings.clip_size)
        return _Prepared(resized, z_t, f_orig)

    @torch.inference_mode()
    def _generate(self, prepared: _Prepared, mask: np.ndarray, class_name: str) -> np.ndarray:
        """The decoded x0 of one UNet call under mask injection: (R, R, 3) uint8."""
        s, pipe = self.settings, self.pipe
        tokens = class_token_indices(pipe.tokenizer, s.template, class_name)
        ids = pipe.tokenizer(s.template.format(c=class_name), padding="max_length",
                             max_length=pipe.tokenizer.model_max_length, truncation=True,
                             return_tensors="pt").input_ids
        text = pipe.text_encoder(ids.to(pipe.text_encoder.device))[0]
        unet = pipe.unet
        z_t = prepared.z_t.to(unet.device, unet.dtype)
        timestep = torch.tensor([s.timestep], device=unet.device)
        with inject_mask(unet, mask, tokens, tuple(z_t.shape[-2:]), s.w_self, s.w_cross):
            out = unet(z_t, timestep, encoder_hidden_states=text.to(unet.dtype)).sample
        x0 = predict_x0(pipe.scheduler, z_t, out, s.timestep)
        vae = pipe.vae
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        decoded = vae.decode((x0 / vae.config.scaling_factor + shift).to(vae.dtype)).sample
        rgb = ((decoded[0].float().clamp(-1, 1) + 1) * 127.5).round()
        return rgb.permute(1, 2, 0).to(torch.uint8).cpu().numpy()

    def _check_coarse(self, coarse: np.ndarray, image_hw: tuple[int, ...]) -> np.ndarray:
        s = np.asarray(coarse)
        if s.shape != tuple(image_hw) or not np.issubdtype(s.dtype, np.floating):
            raise DataError(f"coarse map has shape {s.shape} and dtype {s.dtype}; expected "
                            f"{tuple(image_hw)} float in [0, 1] (the image's height, width)")
        if not np.isfinite(s).all() or s.min() < 0 or s.max() > 1:
            raise DataError(f"coarse map values span [{np.nanmin(s)}, {np.nanmax(s)}] or hold "
                            "NaN; expected foreground probabilities in [0, 1]")
        return s

    def _run(self, prepared: _Prepared, coarse: np.ndarray, class_name: str) -> G4SegResult:
        s = self.settings
        generated = self._generate(prepared, coarse > 0.5, class_name)
        f_gen = dense_clip_features(self.clip_model, self.image_processor, generated,
                                    s.clip_size)
        delta = correspondence(prepared.f_orig, f_gen)
        delta_map = patch_delta_to_pixels(delta, tuple(f_gen.shape[:2]), coarse.shape)
        refined = mix(coarse, delta_map, s.band, s.beta)
        return G4SegResult(refined, generated, delta_map)

    def run(self, image: np.ndarray, coarse: np.ndarray, class_name: str) -> G4SegResult:
        """One class: ``image`` (H, W, 3) uint8, ``coarse`` (H, W) float in [0, 1] ->
        :class:`G4SegResult` (refined map, generated image, pixel correspondence)."""
        coarse = self._check_coarse(coarse, np.asarray(image).shape[:2])
        return self._run(self._prepare(image), coarse, class_name)

    def refine(self, image: np.ndarray, coarse: np.ndarray, class_name: str) -> np.ndarray:
        """One class: (H, W, 3) uint8 image, (H, W) float coarse map in [0, 1] -> the
        refined (H, W) float32 map in [0, 1] (only pixels inside ``settings.band`` move)."""
        return self.run(image, coarse, class_name).refined

    def refine_all(self, image: np.ndarray, coarse: np.ndarray, class_names: Sequence[str]
                   ) -> np.ndarray:
        """All classes, one at a time: ``coarse`` (C, H, W) float in [0, 1] and C names ->
        (C, H, W) float32. Equal to stacking :meth:`refine` per class (the image's latent,
        noise and CLIP features are computed once)."""
        maps = np.asarray(coarse)
        names = list(class_names)
        if maps.ndim != 3 or maps.shape[0] != len(names):
            raise DataError(f"coarse maps have shape {maps.shape} for {len(names)} class "
                            "names; expected (C, H, W) with one name per map")
        checked = [self._check_coarse(m, np.asarray(image).shape[:2]) for m in maps]
        prepared = self._prepare(image)
        out = [self._run(prepared, m, name).refined for m, name in zip(checked, names,
                                                                       strict=True)]
        height, width = maps.shape[1:]
        return np.stack(out) if out else np.zeros((0, height, width), np.float32)
