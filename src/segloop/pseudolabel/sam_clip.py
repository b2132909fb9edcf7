"""The SAM+CLIP baseline's scores (U-SAM's "Additional baseline"; docs/algorithms.md §2, step 8).

For each SAM mask of an image, the masked image (pixels outside the mask set to ``fill``,
optionally cropped to the mask's padded bounding box) goes through CLIP's image tower; its
cosine with the text embedding of ``template.format(c=name)`` of every class is the score.
The caller keeps masks scoring at least ``threshold``, runs NMS and paints.

``score="cosine"`` (the spec's default) is the raw cosine; real CLIP image-text cosines are
about 0.2-0.35, so the spec's 0.7 keeps almost nothing. ``score="probability"`` is CLIP's
zero-shot probability (softmax over the classes of ``logit_scale * cosine``), one reading of
the paper's "70%".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from segloop.errors import ConfigError, DataError

SCORES = ("cosine", "probability")


class EmbeddingScorer(Protocol):
    """What the baseline needs from CLIP (:class:`segloop.models.clip.ClipScorer` fits)."""

    @property
    def logit_scale(self) -> float:
        """CLIP's temperature, ``exp(model.logit_scale)``."""
        ...

    def image_embeddings(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(H, W, 3) uint8 images -> (n, D) float32 unit vectors."""
        ...

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """m texts -> (m, D) float32 unit vectors."""
        ...


@dataclass(frozen=True)
class SamClipSettings:
    """Settings of the SAM+CLIP baseline (see the module docstring)."""

    template: str = "a photo of a {c}"
    score: Literal["cosine", "probability"] = "cosine"
    threshold: float = 0.7
    crop: bool = True  # crop to the mask's box plus pad; False: full-size masked image
    pad: float = 0.1  # fraction of the box's height/width added on each side when cropping
    fill: tuple[int, int, int] = (0, 0, 0)  # RGB colour outside the mask
    batch_size: int = 32  # masked images per CLIP call

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ConfigError(f"SAM+CLIP score must be one of {SCORES}; got {self.score!r}")
        if "{c}" not in self.template:
            raise ConfigError(f"SAM+CLIP template {self.template!r} must contain '{{c}}'")
        if not self.pad >= 0:
            raise ConfigError(f"SAM+CLIP pad must be >= 0; got {self.pad}")
        if self.batch_size < 1:
            raise ConfigError(f"SAM+CLIP batch_size must be >= 1; got {self.batch_size}")
        _check_fill(self.fill)


def _check_fill(fill: Sequence[int]) -> np.ndarray:
    values = np.asarray(fill)
    if values.shape != (3,) or not np.all((values >= 0) & (values <= 255)):
        raise ConfigError(f"SAM+CLIP fill must be three ints in 0..255; got {fill!r}")
    return values.astype(np.uint8)


def _check_inputs(image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image, masks = np.asarray(image), np.asarray(masks)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise DataError(f"image has shape {image.shape} and dtype {image.dtype}; "
                        "expected (H, W, 3) uint8 RGB")
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise DataError(f"masks of shape {masks.shape} do not match image of shape "
                        f"{image.shape}; expected (d, {image.shape[0]}, {image.shape[1]})")
    return image, masks.astype(bool, copy=False)


def masked_images(image: np.ndarray, masks: np.ndarray, *, crop: bool, pad: float,
                  fill: Sequence[int] = (0, 0, 0)) -> list[np.ndarray]:
    """One masked copy of ``image`` per mask.

    ``image``: (H, W, 3) uint8; ``masks``: (d, H, W) bool (nonzero = inside). Returns d
    (h_i, w_i, 3) uint8 arrays: pixels outside mask i set to ``fill``, inside unchanged. With
    ``crop``, cut to the mask's bounding box grown by ``pad * box height`` rows and
    ``pad * box width`` columns (rounded half up) on each side, clipped to the image; otherwise
    (H, W, 3). An empty mask gives a (1, 1, 3) image of ``fill``. Raises :class:`DataError`
    (a ValueError) naming the shapes when they do not match.
    """
    image, masks = _check_inputs(image, masks)
    colour = _check_fill(fill)
    height, width = image.shape[:2]
    out: list[np.ndarray] = []
    for mask in masks:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            out.append(np.broadcast_to(colour, (1, 1, 3)).copy())
            continue
        y0, y1, x0, x1 = 0, height, 0, width
        if crop:
            y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            dy, dx = int(pad * (y1 - y0) + 0.5), int(pad * (x1 - x0) + 0.5)
            y0, y1 = max(0, y0 - dy), min(height, y1 + dy)
            x0, x1 = max(0, x0 - dx), min(width, x1 + dx)
        inside = mask[y0:y1, x0:x1]
        piece = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        piece[...] = colour
        piece[inside] = image[y0:y1, x0:x1][inside]
        out.append(piece)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class TextBank:
    """Class-name text embeddings, computed once per run.

    ``embeddings``: (C, D) float32 unit vectors of ``template`` with ``{c}`` replaced by
    each class name, in ``class_names`` order; ``texts`` holds those prompts.
    """

    def __init__(self, scorer: EmbeddingScorer, class_names: Sequence[str],
                 template: str) -> None:
        if "{c}" not in template:
            raise ConfigError(f"SAM+CLIP template {template!r} must contain '{{c}}' "
                              "(where the class name goes), e.g. 'a photo of a {c}'")
        if len(class_names) == 0:
            raise ConfigError("SAM+CLIP needs at least one class name; got none")
        self.class_names = [str(name) for name in class_names]
        self.template = template
        self.texts = [template.replace("{c}", name) for name in self.class_names]
        self.embeddings = _unit(scorer.text_embeddings(self.texts)).astype(np.float32)


def mask_class_scores(scorer: EmbeddingScorer, image: np.ndarray, masks: np.ndarray,
                      bank: TextBank, settings: SamClipSettings) -> np.ndarray:
    """(d, C) float32 score of each mask of ``image`` for each class of ``bank``.

    ``image``: (H, W, 3) uint8; ``masks``: (d, H, W) bool. Score "cosine": cosine of the
    masked image's CLIP embedding (see :func:`masked_images`) with each text embedding, in
    [-1, 1]; "probability": softmax over the C classes of ``scorer.logit_scale * cosine``
    (rows sum to 1). Masked images go to CLIP ``settings.batch_size`` at a time.
    """
    image, masks = _check_inputs(image, masks)
    text = bank.embeddings.astype(np.float64)
    cosines = [np.zeros((0, text.shape[0]))]
    for i in range(0, len(masks), settings.batch_size):
        pieces = masked_images(image, masks[i : i + settings.batch_size], crop=settings.crop,
                               pad=settings.pad, fill=settings.fill)
        cosines.append(_unit(scorer.image_embeddings(pieces)) @ text.T)
    cosine = np.clip(np.concatenate(cosines), -1.0, 1.0)
    if settings.score == "cosine":
        return cosine.astype(np.float32)
    logits = float(scorer.logit_scale) * cosine
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
