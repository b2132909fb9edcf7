"""Labelling target images with a method that reads the pixels itself (no SAM masks).

Such a method (:data:`segloop.pseudolabel.plan.IMAGE_METHODS`; today MaskDiffusion) turns
an (H, W, 3) uint8 image into (C, H, W) float32 scores over its labels. Each pixel takes
the label of highest score (abstaining, 255, where that score is below
``abstain_below`` when set), mapped to the target's class ids. A chunk's label PNGs are
written first and an empty ``pseudolabel_masks`` part last: the same commit point as the
mask methods, so resume and commit work unchanged. Each image's soft per-label maps
(:func:`soft_maps`) go to ``scores/`` beside its label map.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from segloop.config import Config
from segloop.data.base import Dataset, Sample
from segloop.errors import ConfigError, DataError, ModelOutputError
from segloop.faults import kill_point
from segloop.pseudolabel import store
from segloop.pseudolabel.label_mapping import ABSTAIN
from segloop.pseudolabel.mask_label import ChunkStats, load_target
from segloop.pseudolabel.plan import PseudoPlan


class ImageSegmenter(Protocol):
    """(H, W, 3) uint8 RGB -> (C, H, W) float32 scores over the method's C labels."""

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


@dataclass
class MaskDiffusionSegmenter:
    """MaskDiffusion's cosine scores for a fixed list of class names."""

    model: Any  # segloop.pseudolabel.maskdiffusion.MaskDiffusion
    names: tuple[str, ...]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.segment(image, self.names).scores, np.float32)


@dataclass
class ImageTargets:
    """The data section's dataset and its samples by name (listed once per round)."""

    dataset: Dataset
    samples: dict[str, Sample]

    @classmethod
    def of(cls, dataset: Dataset) -> ImageTargets:
        return cls(dataset, {s.name: s for s in dataset.samples()})


@dataclass
class ImageWorker:
    """What labels an image method's chunks: the segmenter and the target images."""

    segmenter: ImageSegmenter
    targets: ImageTargets


def make_worker(cfg: Config, plan: PseudoPlan, dataset: Dataset) -> ImageWorker:
    """The configured image method's segmenter (its model loaded by the real loader) and
    the dataset listing. Raises :class:`~segloop.errors.ModelNotFoundError` (which model,
    where it looked, how to provide it) when the weights are missing."""
    if plan.method != "maskdiffusion":
        raise ConfigError(f"pseudolabel.method {plan.method!r} is not an image method")
    from segloop.models.diffusion import load_from_config
    from segloop.pseudolabel.maskdiffusion import MaskDiffusion

    loaded = load_from_config(cfg.models.diffusion, cfg.base.device, cfg.base.dtype)
    model = MaskDiffusion(loaded.pipe, maskdiffusion_settings(cfg))
    return ImageWorker(MaskDiffusionSegmenter(model, plan.mapping.labels),
                       ImageTargets.of(dataset))


def maskdiffusion_settings(cfg: Config) -> Any:
    """``pseudolabel.maskdiffusion`` as the library's settings."""
    from segloop.pseudolabel.maskdiffusion import MaskDiffusionSettings

    m = cfg.pseudolabel.maskdiffusion
    return MaskDiffusionSettings(**m.model_dump(exclude={"abstain_below"}))


def abstain_below(cfg: Config) -> float | None:
    """The configured image method's abstain threshold (None: label every pixel)."""
    return cfg.pseudolabel.maskdiffusion.abstain_below


def labels_from_scores(scores: np.ndarray, class_ids: np.ndarray,
                       abstain_below: float | None = None) -> np.ndarray:
    """(C, H, W) float scores -> (H, W) uint8 target class ids (argmax over C, mapped by
    ``class_ids`` (C,)); :data:`ABSTAIN` where the best score is below ``abstain_below``."""
    if scores.ndim != 3 or scores.shape[0] != len(class_ids):
        raise DataError(f"scores must be (C, H, W) with C = {len(class_ids)} labels, got "
                        f"{scores.shape}")
    best = scores.argmax(0)
    out = np.asarray(class_ids, np.int64)[best].astype(np.uint8)
    if abstain_below is not None:
        out[scores.max(0) < abstain_below] = ABSTAIN
    return out


def soft_maps(scores: np.ndarray) -> np.ndarray:
    """(C, H, W) raw scores -> (C, H, W) float32 per-label maps in [0, 1]: each label that
    wins at least one pixel min-max normalised over the image (as class activation maps
    are, Kim 2022), the others 0. These are the round's ``scores/`` (G4Seg's coarse
    maps, the clustering seeds' class maps)."""
    arr = np.asarray(scores, np.float32)
    out = np.zeros_like(arr)
    present = np.bincount(arr.argmax(0).ravel(), minlength=arr.shape[0]) > 0
    for c in np.flatnonzero(present):
        lo, hi = float(arr[c].min()), float(arr[c].max())
        if hi > lo:
            out[c] = (arr[c] - lo) / (hi - lo)
    return out


@contextmanager
def about_image(plan: PseudoPlan, image_id: str, k: int) -> Iterator[None]:
    """Re-raise a :class:`ModelOutputError` with the method, the image and the chunk."""
    try:
        yield
    except ModelOutputError as err:
        raise ModelOutputError(f"{plan.method}, image {plan.names[image_id]}: {err}; nothing "
                               f"of chunk {k} was written") from None


def label_image_chunk(plan: PseudoPlan, k: int, segmenter: ImageSegmenter,
                      targets: ImageTargets, abstain_below: float | None = None,
                      progress: bool = True) -> ChunkStats:
    """Label chunk ``k`` of an image method's plan and commit it to the staging folder."""
    start = time.perf_counter()
    ids: Sequence[str] = plan.chunks[k]
    labels: dict[str, np.ndarray] = {}
    soft: dict[str, np.ndarray] = {}
    for image_id in tqdm(ids, desc=f"{plan.method} chunk {k}", unit="img",
                         disable=not progress, leave=False):
        loaded = load_target(targets.dataset, targets.samples, plan.names[image_id], image_id)
        with about_image(plan, image_id, k):
            scores = segmenter(loaded.image)
            if not np.isfinite(scores).all():
                raise ModelOutputError("non-finite scores")
        if scores.shape[1:] != loaded.image.shape[:2]:
            raise DataError(f"{plan.method} returned scores of shape {scores.shape} for "
                            f"{plan.names[image_id]} of size {loaded.image.shape[:2]}")
        labels[image_id] = labels_from_scores(scores, plan.mapping.class_ids, abstain_below)
        soft[image_id] = soft_maps(scores)
    store.write_chunk(plan.paths.staging, k, labels, [], soft)
    kill_point("pseudo.chunk")
    return ChunkStats(k, len(ids), 0, 0, round(time.perf_counter() - start, 3))
