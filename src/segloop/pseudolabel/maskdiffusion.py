"""MaskDiffusion: training-free open-vocabulary segmentation with a frozen Stable Diffusion.

Kawano and Aoki 2024 (Kawano's thesis ch. 5, eq. 5.3-5.5; docs/algorithms.md §4b). For an
image and candidate class names:

1. resize the image to a ``resolution`` x ``resolution`` square (aspect ratio not kept; the
   scores are resized back to the image's own size at the end), VAE-encode it
   (``latent_dist.mean * scaling_factor``) and, if ``timestep > 0``, noise it to that
   timestep with the pipeline scheduler's ``add_noise`` (seeded). ``timestep == 0`` adds no
   noise at all, as the authors' (ODISE) feature extractor does;
2. ONE UNet call at ``timestep`` with the prompt listing all class names
   (``"road, sky, car"``), under two captures (:mod:`segloop.models.attention_capture`):
   the outputs of the decoder blocks ``feature_blocks``, upsampled bilinearly to the largest
   of them and concatenated per pixel: the features f (D, h, w) (eq. 5.3), L2-normalised
   per pixel if ``normalise_features``; and the pre-softmax cross-attention logits
   ``Q K^T / sqrt(d)`` (eq. 5.4) of the class-name tokens, averaged over heads and over the
   kept layers (each resized bilinearly to f's grid); a class's map is the mean over its
   tokens;
3. each class's map becomes non-negative weights (``attention_weights``), the class
   prototype is the weighted mean of f (eq. 5.5), and each pixel takes the class of highest
   cosine similarity.

Unsupervised MaskDiffusion (:func:`spectral_segments`) clusters f, from an empty prompt,
into k segments by spectral clustering.

Choices the thesis leaves open, recorded here:

* ``feature_blocks = (0, 1)``: the outputs of ``unet.up_blocks[0]`` and ``[1]``, the
  decoder's two coarsest blocks. On SD 1.x at 512 px (64x64 latent) they are
  (1280, 16, 16) and (1280, 32, 32), strides 32 and 16 of the image as in the authors'
  code, so f is 2560-dimensional on a 32x32 grid (the thesis quotes 1024 dimensions; its
  extractor is not specified further). On the tiny test UNet (2 levels) at 32 px (16x16
  latent) they are (64, 16, 16) (after the block's upsampler) and (32, 16, 16): f is
  96-dimensional on the latent grid.
* ``attention_max_side_ratio = 0.5``: keep the cross-attention layers whose grid side is at
  most half the latent side, as the authors do (SD 1.x at 64x64: the 32x32, 16x16 and 8x8
  layers, 11 of the 16). If no captured layer qualifies, the coarsest captured layers
  (smallest side) are used instead. On the tiny UNet every cross-attention layer sits at half
  the latent side (8x8 for a 16x16 latent), so all four qualify.
* ``attention_weights = "minmax"``: eq. 5.5 is a weighted mean, so weights must be >= 0,
  but raw logits can be negative and carry a per-token offset shared by the whole image
  (from the key's norm and direction). "minmax" maps each class's averaged map to [0, 1]
  (least attended pixel 0, most attended 1), removing that offset and scale so the
  prototype is drawn from where the token attends most. "relu" (clamp at 0) keeps the raw
  scale but gives a zero prototype to a class whose logits are all negative, and lets a
  positive offset pull the prototype towards the image's mean feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg
import torch
from torch.nn import functional as F

from segloop.errors import FLOAT16_OVERFLOW, ConfigError, DataError, ModelOutputError
from segloop.models.attention_capture import (
    PLACES,
    capture_block_outputs,
    capture_cross_attention,
    resize_maps,
)

ATTENTION_WEIGHTS = ("minmax", "relu")
#: The score of a class with a zero prototype (weights summing to 0): below any cosine, so
#: such a class never wins a pixel unless every class has a zero prototype.
EMPTY_SCORE = -2.0


@dataclass(frozen=True)
class MaskDiffusionSettings:
    """Settings of :class:`MaskDiffusion` (see the module docstring for the defaults).

    ``resolution``: side of the square the image is resized to (a multiple of 8; SD 1.x:
    512, the tiny test pipeline: 32 or 64). ``timestep``: the UNet's timestep (0: no noise).
    ``feature_blocks``: indices into ``unet.up_blocks`` whose outputs form f.
    ``attention_places``: UNet parts whose cross-attention layers are read.
    ``attention_max_side_ratio``: keep layers whose side <= ratio x the latent side.
    ``attention_weights``: "minmax" or "relu". ``prompt_separator``: joins the class names.
    ``normalise_features``: L2-normalise f per pixel. ``seed``: noise (timestep > 0) and
    the k-means of unsupervised segmentation.
    """

    resolution: int = 512
    timestep: int = 0
    feature_blocks: tuple[int, ...] = (0, 1)
    attention_places: tuple[str, ...] = ("down", "mid", "up")
    attention_max_side_ratio: float = 0.5
    attention_weights: Literal["minmax", "relu"] = "minmax"
    prompt_separator: str = ", "
    normalise_features: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resolution < 8 or self.resolution % 8:
            raise ConfigError(f"MaskDiffusion resolution must be a positive multiple of 8 "
                              f"(e.g. 512); got {self.resolution}")
        if self.timestep < 0:
            raise ConfigError(f"MaskDiffusion timestep must be >= 0 (0: no noise); got "
                              f"{self.timestep}")
        blocks = tuple(self.feature_blocks)
        if not blocks or min(blocks) < 0 or len(set(blocks)) != len(blocks):
            raise ConfigError(f"MaskDiffusion feature_blocks must be distinct up-block indices "
                              f">= 0, e.g. (0, 1); got {self.feature_blocks!r}")
        places = tuple(self.attention_places)
        if not places or not set(places) <= set(PLACES.values()):
            raise ConfigError(f"MaskDiffusion attention_places must be a non-empty subset of "
                              f"{sorted(PLACES.values())}; got {self.attention_places!r}")
        if not 0 < self.attention_max_side_ratio <= 1:
            raise ConfigError(f"MaskDiffusion attention_max_side_ratio must be in (0, 1]; got "
                              f"{self.attention_max_side_ratio}")
        if self.attention_weights not in ATTENTION_WEIGHTS:
            raise ConfigError(f"MaskDiffusion attention_weights must be one of "
                              f"{ATTENTION_WEIGHTS}; got {self.attention_weights!r}")


@dataclass(frozen=True)
class MaskDiffusionResult:
    """What :meth:`MaskDiffusion.segment` returns (C classes, image H x W, feature grid h x w).

    ``scores``: (C, H, W) float32 cosine similarities (``EMPTY_SCORE`` for a class with a zero
    prototype), bilinearly upsampled; ``labels``: (H, W) int64 argmax indices into the class
    names; ``features``: (D, h, w) float32 f; ``attention``: (C, h, w) float32 averaged
    pre-softmax logits; ``weights``: (C, h, w) float32 the eq. 5.5 weights made from them;
    ``prompt`` and ``token_indices``: from :func:`class_token_indices`; ``layers``: names of
    the cross-attention layers averaged.
    """

    scores: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    attention: np.ndarray
    weights: np.ndarray
    prompt: str
    token_indices: list[list[int]]
    layers: tuple[str, ...]


def class_token_indices(tokenizer: Any, names: Sequence[str], separator: str = ", "
                        ) -> tuple[str, list[list[int]]]:
    """The prompt ``separator.join(names)`` and, per class, the positions of its name's
    tokens in the tokenised prompt (position 0 is BOS, so the first name starts at 1).

    ``tokenizer``: a Hugging Face (CLIP) tokenizer. Empty or duplicate names, a name with no
    token, a separator that merges with the names when tokenised, or a prompt longer than
    ``tokenizer.model_max_length`` (77 with BOS and EOS) -> ConfigError; the last says how
    many of the classes fit.
    """
    names = [str(n) for n in names]
    if not names:
        raise ConfigError("MaskDiffusion needs at least one class name; got none")
    if any(not n.strip() for n in names):
        raise ConfigError(f"class names must not be empty; got {names!r}")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"class names must be distinct; {dupes!r} appear more than once")
    pieces = [tokenizer.tokenize(n) for n in names]
    for name, piece in zip(names, pieces, strict=True):
        if not piece:
            raise ConfigError(f"class name {name!r} has no token in the tokenizer; rename it")
    sep = tokenizer.tokenize(separator) if separator else []
    specials = int(tokenizer.num_special_tokens_to_add())
    limit = int(tokenizer.model_max_length)
    lengths = np.cumsum([len(p) for p in pieces]) + len(sep) * np.arange(len(names)) + specials
    if lengths[-1] > limit:
        fit = int((lengths <= limit).sum())
        raise ConfigError(f"the prompt of {len(names)} class names takes {int(lengths[-1])} "
                          f"tokens but the tokenizer takes at most {limit} (BOS and EOS "
                          f"included): only the first {fit} classes fit; split the classes "
                          "into groups or shorten their names")
    prompt = separator.join(names)
    expected: list[str] = []
    positions: list[list[int]] = []
    ids = tokenizer(prompt).input_ids
    offset = 1 if ids and ids[0] == tokenizer.bos_token_id else 0
    for i, piece in enumerate(pieces):
        if i:
            expected += sep
        start = offset + len(expected)
        positions.append(list(range(start, start + len(piece))))
        expected += piece
    if tokenizer.tokenize(prompt) != expected:
        raise ConfigError(f"prompt separator {separator!r} merges with the class names when "
                          "tokenised, so class tokens cannot be located; use ', '")
    return prompt, positions


def class_weights(attention: torch.Tensor, mode: str = "minmax") -> torch.Tensor:
    """Eq. 5.5 weights from class attention maps: (C, h, w) -> (C, h, w) float32, >= 0.

    "minmax": per class ``(a - min) / (max - min)`` (a constant map -> all zeros, i.e. a
    zero prototype); "relu": ``max(a, 0)``. Unknown mode -> ConfigError.
    """
    if attention.ndim != 3:
        raise DataError(f"attention must be (C, h, w); got shape {tuple(attention.shape)}")
    maps = attention.float()
    if mode == "relu":
        return maps.clamp(min=0)
    if mode != "minmax":
        raise ConfigError(f"attention weights mode must be one of {ATTENTION_WEIGHTS}; got "
                          f"{mode!r}")
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp(min=torch.finfo(flat.dtype).tiny),
                         torch.zeros_like(flat))
    return scaled.reshape(maps.shape)


def _check_features(features: torch.Tensor) -> None:
    if features.ndim != 3:
        raise DataError(f"features must be (D, h, w); got shape {tuple(features.shape)}")


def prototypes(features: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Class prototypes, eq. 5.5: ``f_c = sum_nm a_c,nm f_nm / sum_nm a_c,nm``.

    ``features``: (D, h, w); ``attention``: (C, h, w) non-negative weights on the same grid.
    Returns (C, D) float32. A class whose weights sum to 0 gets a zero prototype, which
    :func:`cosine_scores` scores ``EMPTY_SCORE`` (it never wins). Shape mismatch or a
    negative weight -> DataError.
    """
    _check_features(features)
    if attention.ndim != 3 or attention.shape[1:] != features.shape[1:]:
        raise DataError(f"attention must be (C, h, w) on the features' grid "
                        f"{tuple(features.shape[1:])}; got shape {tuple(attention.shape)}")
    weights = attention.float().reshape(attention.shape[0], -1)
    if bool((weights < 0).any()):
        raise DataError(f"attention weights must be >= 0 (min {float(weights.min()):.4g}); "
                        "turn logits into weights with class_weights first")
    flat = features.float().reshape(features.shape[0], -1)  # (D, N)
    total = weights.sum(dim=1, keepdim=True)  # (C, 1)
    sums = weights @ flat.T  # (C, D)
    return torch.where(total > 0, sums / total.clamp(min=torch.finfo(sums.dtype).tiny),
                       torch.zeros_like(sums))


def cosine_scores(features: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pixel's feature with every prototype.

    ``features``: (D, h, w); ``protos``: (C, D). Returns (C, h, w) float32; labels are its
    argmax over C. A zero prototype scores ``EMPTY_SCORE`` everywhere; a zero feature
    scores 0 with every non-zero prototype.
    """
    _check_features(features)
    if protos.ndim != 2 or protos.shape[1] != features.shape[0]:
        raise DataError(f"prototypes must be (C, {features.shape[0]}); got shape "
                        f"{tuple(protos.shape)}")
    flat = F.normalize(features.float().reshape(features.shape[0], -1), dim=0)
    unit = F.normalize(protos.float(), dim=1)
    scores = unit @ flat  # (C, N)
    empty = protos.float().abs().sum(dim=1) == 0
    scores[empty] = EMPTY_SCORE
    return scores.reshape(protos.shape[0], *features.shape[1:])


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [x[rng.integers(len(x))]]
    dist = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = dist.sum()
        index = rng.choice(len(x), p=dist / total) if total > 0 else rng.integers(len(x))
        centres.append(x[index])
        dist = np.minimum(dist, ((x - x[index]) ** 2).sum(1))
    return np.stack(centres)


def kmeans(x: np.ndarray, k: int, seed: int = 0, n_init: int = 4, iters: int = 100
           ) -> np.ndarray:
    """Seeded k-means (k-means++ starts, Lloyd iterations, best of ``n_init`` by inertia):
    (N, d) float -> (N,) int64 cluster ids in 0..k-1. An emptied cluster is re-seeded at the
    point farthest from its centre."""
    x = np.asarray(x, np.float64)
    rng = np.random.default_rng(seed)
    best, best_inertia = np.zeros(len(x), np.int64), np.inf
    for _ in range(n_init):
        centres = _kmeans_pp(x, k, rng)
        for _ in range(iters):
            dist = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)  # (N, k)
            labels = dist.argmin(1)
            new = centres.copy()
            for j in range(k):
                members = labels == j
                new[j] = x[members].mean(0) if members.any() else x[dist.min(1).argmax()]
            if np.allclose(new, centres):
                break
            centres = new
        dist = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        labels = dist.argmin(1)
        inertia = float(dist[np.arange(len(x)), labels].sum())
        if inertia < best_inertia - 1e-12:
            best, best_inertia = labels, inertia
    return best.astype(np.int64)


def spectral_segments(features: torch.Tensor, k: int, seed: int = 0) -> np.ndarray:
    """Unsupervised MaskDiffusion: (D, h, w) features -> (h, w) int32 segment ids.

    Affinity ``W_ij = max(cos(f_i, f_j), 0)``: pixel cosines clamped at 0, so dissimilar
    pixels are disconnected and no bandwidth has to be chosen (self-affinity is 1, so every
    non-zero pixel has degree >= 1). The normalised Laplacian ``I - D^-1/2 W D^-1/2`` gives
    its k smallest eigenvectors (Ng-Jordan-Weiss: rows scaled to unit length), clustered by
    seeded :func:`kmeans`. Ids are renumbered by first appearance in raster order (0 at the
    top-left pixel); fewer than k ids appear only when pixels coincide. ``k`` outside
    1..h*w -> ConfigError.
    """
    _check_features(features)
    d, h, w = features.shape
    n = h * w
    if not 1 <= k <= n:
        raise ConfigError(f"spectral segments: k must be in 1..{n} (the feature grid's pixel "
                          f"count); got {k}")
    x = F.normalize(features.double().reshape(d, n), dim=0).T.cpu().numpy()  # (N, D)
    affinity = np.clip(x @ x.T, 0.0, None)
    degree = np.maximum(affinity.sum(1), 1e-12)
    scale = 1.0 / np.sqrt(degree)
    m = affinity * scale[:, None] * scale[None, :]
    _, vectors = scipy.linalg.eigh(m, subset_by_index=[n - k, n - 1])
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    embedding = vectors / np.maximum(norms, 1e-12)
    labels = kmeans(embedding, k, seed=seed)
    found, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))  # found id -> rank of its first appearance
    return rank[inverse].reshape(h, w).astype(np.int32)


def _require_finite(values: torch.Tensor, what: str, dtype: torch.dtype) -> None:
    """Refuse NaN or infinite UNet outputs: the prototypes would hide them (a constant score
    everywhere, so every pixel gets the first class)."""
    if not bool(torch.isfinite(values).all()):
        name = str(dtype).removeprefix("torch.")
        raise ModelOutputError(
            f"Stable Diffusion's UNet gave non-finite {what} (dtype {name}): the UNet at "
            f"{FLOAT16_OVERFLOW}")


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise DataError(f"image has shape {image.shape} and dtype {image.dtype}; expected "
                        "(H, W, 3) uint8 RGB")
    return image


def _capture_limit(unet: Any, latent_hw: tuple[int, int], s: MaskDiffusionSettings
                   ) -> int | None:
    """The largest layer side worth recording (layers above ``attention_max_side_ratio``
    of the latent side are dropped anyway, so their logits are not computed), or None
    (record all) when no layer would qualify and the coarsest are the fallback."""
    limit = int(s.attention_max_side_ratio * max(latent_hw))
    side = max(latent_hw)
    for _ in range(len(unet.down_blocks) - 1):  # the coarsest attention grid's side
        side = -(-side // 2)
    return limit if limit >= side else None


class MaskDiffusion:
    """MaskDiffusion on a diffusers Stable Diffusion 1.x/2.x pipeline (module docstring).

    ``pipe`` needs ``vae``, ``unet``, ``tokenizer``, ``text_encoder``, ``scheduler`` and
    ``encode_prompt`` (``StableDiffusionPipeline`` has them). A bad setting for this
    pipeline -> ConfigError.
    """

    def __init__(self, pipe: Any, settings: MaskDiffusionSettings | None = None) -> None:
        self.pipe = pipe
        self.settings = settings or MaskDiffusionSettings()
        s = self.settings
        missing = [a for a in ("vae", "unet", "tokenizer", "text_encoder", "scheduler",
                               "encode_prompt") if getattr(pipe, a, None) is None]
        if missing:
            raise ConfigError(f"MaskDiffusion needs a Stable Diffusion 1.x/2.x pipeline; "
                              f"{type(pipe).__name__} lacks {missing}")
        if getattr(pipe.unet.config, "addition_embed_type", None) is not None:
            raise ConfigError("MaskDiffusion supports Stable Diffusion 1.x/2.x UNets; this one "
                              f"needs added conditioning ({pipe.unet.config.addition_embed_type})")
        n_up = len(pipe.unet.up_blocks)
        if max(s.feature_blocks) >= n_up:
            raise ConfigError(f"MaskDiffusion feature_blocks {s.feature_blocks} must be in "
                              f"0..{n_up - 1}: this UNet has {n_up} up blocks")
        train_steps = int(pipe.scheduler.config.num_train_timesteps)
        if s.timestep >= train_steps:
            raise ConfigError(f"MaskDiffusion timestep must be < {train_steps} (the scheduler's "
                              f"num_train_timesteps); got {s.timestep}")
        factor = int(getattr(pipe, "vae_scale_factor", 8))
        if s.resolution % factor:
            raise ConfigError(f"MaskDiffusion resolution {s.resolution} must be a multiple of "
                              f"the VAE's scale factor {factor}")

    @property
    def device(self) -> torch.device:
        return getattr(self.pipe, "_execution_device", None) or self.pipe.unet.device

    def _latents(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 4, r/f, r/f) latents at ``timestep`` (UNet dtype)."""
        r = self.settings.resolution
        vae = self.pipe.vae
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False,
                          antialias=True).clamp(0, 255)
        x = (x / 127.5 - 1.0).to(self.device, vae.dtype)
        latents = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
        latents = latents.to(self.pipe.unet.dtype)
        t = self.settings.timestep
        if t > 0:
            generator = torch.Generator(device="cpu").manual_seed(self.settings.seed)
            noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
            latents = self.pipe.scheduler.add_noise(
                latents, noise.to(latents.device, latents.dtype),
                torch.tensor([t], device=latents.device))
        return latents

    def extract(self, image: np.ndarray, prompt: str, token_indices: Sequence[int]
                ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[str, ...]]:
        """One UNet call on ``image`` with ``prompt``: the features f (D, h, w) float32 (CPU),
        the cross-attention logits of ``token_indices`` (T, h, w) float32 averaged over heads
        and kept layers on f's grid (None when no token is asked), and the kept layers'
        names."""
        s = self.settings
        image = _check_image(image)
        unet = self.pipe.unet
        with torch.inference_mode():
            latents = self._latents(image)
            latent_hw = (int(latents.shape[2]), int(latents.shape[3]))
            embeddings = self.pipe.encode_prompt(prompt, latents.device, 1, False)[0]
            embeddings = embeddings.to(unet.dtype)
            timestep = torch.tensor(s.timestep, device=latents.device)
            attention_capture = (
                capture_cross_attention(unet, token_indices, latent_hw,
                                        places=s.attention_places,
                                        max_side=_capture_limit(unet, latent_hw, s))
                if token_indices else nullcontext(None))
            with (attention_capture as store,
                  capture_block_outputs(unet, s.feature_blocks) as blocks):
                unet(latents, timestep, encoder_hidden_states=embeddings)
            outputs = [blocks.latest(i).float() for i in s.feature_blocks]
            size = max((tuple(o.shape[-2:]) for o in outputs), key=lambda hw: hw[0] * hw[1])
            features = torch.cat([resize_maps(o, size) for o in outputs], dim=1)[0]
            _require_finite(features, "features", unet.dtype)
            if s.normalise_features:
                features = F.normalize(features, dim=0)
            if store is None:
                return features.cpu(), None, ()
            limit = s.attention_max_side_ratio * max(latent_hw)
            kept = [layer for layer in store.layers if max(layer.size) <= limit]
            if not kept and store.layers:  # fall back to the coarsest captured layers
                coarsest = min(max(layer.size) for layer in store.layers)
                kept = [layer for layer in store.layers if max(layer.size) == coarsest]
            store.layers[:] = kept
            attention = store.mean(size)[0]
            _require_finite(attention, "cross-attention", unet.dtype)
            names = tuple(dict.fromkeys(layer.name for layer in kept))
        return features.cpu(), attention.cpu(), names

    def segment(self, image: np.ndarray, class_names: Sequence[str]) -> MaskDiffusionResult:
        """Label every pixel of ``image`` ((H, W, 3) uint8 RGB) with one of ``class_names``."""
        s = self.settings
        image = _check_image(image)
        prompt, positions = class_token_indices(self.pipe.tokenizer, class_names,
                                                s.prompt_separator)
        columns = sorted({p for pos in positions for p in pos})
        features, token_maps, layers = self.extract(image, prompt, columns)
        assert token_maps is not None
        column = {p: i for i, p in enumerate(columns)}
        attention = torch.stack([token_maps[[column[p] for p in pos]].mean(0)
                                 for pos in positions])  # (C, h, w)
        weights = class_weights(attention, s.attention_weights)
        scores = cosine_scores(features, prototypes(features, weights))
        full = resize_maps(scores[None], tuple(image.shape[:2]))[0]
        return MaskDiffusionResult(
            scores=full.numpy().astype(np.float32), labels=full.argmax(0).numpy().astype(np.int64),
            features=features.numpy().astype(np.float32),
            attention=attention.numpy().astype(np.float32),
            weights=weights.numpy().astype(np.float32), prompt=prompt,
            token_indices=positions, layers=layers)

    def segment_unsupervised(self, image: np.ndarray, k: int) -> np.ndarray:
        """Unsupervised MaskDiffusion: (H, W, 3) uint8 -> (H, W) int32 ids of ``k`` segments,
        from f of an empty prompt by :func:`spectral_segments` (seeded by ``settings.seed``),
        upsampled by nearest neighbour."""
        image = _check_image(image)
        features, _, _ = self.extract(image, "", [])
        segments = spectral_segments(features, k, seed=self.settings.seed)
        grid = torch.from_numpy(segments).float()[None, None]
        full = F.interpolate(grid, size=tuple(image.shape[:2]), mode="nearest")[0, 0]
        return full.numpy().astype(np.int32)
