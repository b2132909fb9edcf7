"""Labelling target images: per-mask scores -> keep, NMS, paint (docs/algorithms.md §2, step 7).

U-SAM scores a mask with its head's softmax over the labels (from the stored embedding
alone); SAM+CLIP scores the masked image against "a photo of a {c}" texts (it needs the
pixels, read from the ``data`` section's dataset). The rule afterwards is the same: keep
masks whose best score reaches the threshold, mask NMS, paint in ascending confidence,
fill the rest with the background class (or 255 = abstain).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from segloop.config import Config
from segloop.data.base import Dataset, Sample
from segloop.data.datasets import open_dataset
from segloop.embed.store import Embeddings, read_embeddings
from segloop.errors import DataError
from segloop.faults import kill_point
from segloop.models.clip import load_clip
from segloop.pseudolabel import store
from segloop.pseudolabel.paint import decide, paint
from segloop.pseudolabel.plan import PseudoPlan
from segloop.pseudolabel.sam_clip import SamClipSettings, TextBank, mask_class_scores


@dataclass(frozen=True)
class ChunkStats:
    chunk: int
    images: int
    masks: int
    kept: int
    seconds: float
    refined: int = 0  # G4Seg: label maps refined (those with scores in the band)


class MaskScorer(Protocol):
    """Scores (d, C) for the d masks of image ``i`` of an :class:`Embeddings` batch."""

    needs_tokens: bool

    def __call__(self, emb: Embeddings, i: int, masks: np.ndarray) -> np.ndarray: ...


class USamScorer:
    """The trained head's probabilities, computed once per chunk."""

    needs_tokens = True

    def __init__(self, head: Any) -> None:
        self.head = head
        self._emb: Embeddings | None = None
        self._probs = np.zeros((0, 0, 0), np.float32)

    def __call__(self, emb: Embeddings, i: int, masks: np.ndarray) -> np.ndarray:
        from segloop.pseudolabel.usam import predict

        if emb is not self._emb:  # a new chunk: one forward pass for all its images
            assert emb.tokens is not None
            self._emb, self._probs = emb, predict(self.head, emb.tokens)
        return self._probs[i]


class SamClipScorer:
    """CLIP scores of each masked image against the label texts."""

    needs_tokens = False

    def __init__(self, scorer: Any, bank: TextBank, settings: SamClipSettings,
                 dataset: Dataset) -> None:
        self.scorer, self.bank, self.settings = scorer, bank, settings
        self.samples: dict[str, Sample] = {s.name: s for s in dataset.samples()}
        self.dataset = dataset

    def __call__(self, emb: Embeddings, i: int, masks: np.ndarray) -> np.ndarray:
        image = load_target(self.dataset, self.samples, emb.names[i], emb.image_ids[i]).image
        return mask_class_scores(self.scorer, image, masks, self.bank, self.settings)


def load_target(dataset: Dataset, samples: dict[str, Sample], name: str, image_id: str
                ) -> Any:
    """The dataset sample behind an embedded image (checked by content id)."""
    sample = samples.get(name)
    if sample is None:
        raise DataError(f"target image {name!r} (id {image_id}) is in the embeddings but not in "
                        "the dataset of the data section: point data.* at the dataset the "
                        "target embeddings were made from")
    loaded = dataset.load(sample)
    if loaded.image_id != image_id:
        raise DataError(f"{sample.image_url} changed since it was embedded (id "
                        f"{loaded.image_id}, embedded {image_id}): run the embed flow again")
    return loaded


def target_dataset(cfg: Config, root: str) -> Dataset:
    d = cfg.data
    return open_dataset(d.format, root, d.split, d.classes, storage_options=d.storage_options,
                        manifest_external=d.manifest_external)


def sam_clip_settings(cfg: Config) -> SamClipSettings:
    s = cfg.pseudolabel.sam_clip
    return SamClipSettings(template=s.template, score=s.score, threshold=s.threshold,
                           crop=s.crop, pad=s.pad, batch_size=s.batch_size)


@lru_cache(maxsize=1)
def _clip(model_id: str, local_files_only: bool, device: str) -> Any:
    return load_clip(model_id, local_files_only=local_files_only, device=device)


def make_scorer(cfg: Config, plan: PseudoPlan, root: str) -> MaskScorer:
    """The configured method's scorer (the head or CLIP is loaded once per process)."""
    if plan.method == "usam":
        from segloop.pseudolabel.heads import inference_head

        return USamScorer(inference_head(cfg, plan))
    clip_cfg = cfg.models.clip
    if not clip_cfg.model_id:
        raise DataError("pseudolabel.method sam_clip needs a CLIP model: set "
                        "models.clip.model_id (e.g. openai/clip-vit-base-patch32, or tiny)")
    scorer = _clip(clip_cfg.model_id, clip_cfg.local_files_only, cfg.base.device)
    settings = sam_clip_settings(cfg)
    bank = TextBank(scorer, plan.mapping.labels, settings.template)
    return SamClipScorer(scorer, bank, settings, target_dataset(cfg, root))


def threshold(cfg: Config) -> float:
    p = cfg.pseudolabel
    return p.conf if p.method == "usam" else p.sam_clip.threshold


def mask_soft_maps(masks: np.ndarray, class_index: np.ndarray, confidence: np.ndarray,
                   num_labels: int) -> np.ndarray:
    """Masks (K, H, W) bool with their best label index (K,) and its confidence (K,) ->
    (num_labels, H, W) float32: per label, the highest confidence of a mask of that label
    covering the pixel (0 where none does); the round's ``scores/``. Every scored mask
    counts, kept or not, so a refinement (G4Seg) sees the uncertain ones too."""
    out = np.zeros((num_labels, *masks.shape[1:]), np.float32)
    for m, c, p in zip(masks, class_index, confidence, strict=True):
        np.maximum(out[int(c)], np.where(m, np.float32(p), np.float32(0)), out=out[int(c)])
    return out


def label_chunk(cfg: Config, plan: PseudoPlan, k: int, scorer: MaskScorer,
                progress: bool = True) -> ChunkStats:
    """Label chunk ``k`` of the plan and commit it to the staging folder."""
    start = time.perf_counter()
    ids = plan.chunks[k]
    emb = read_embeddings(plan.paths.target, ids, tokens=scorer.needs_tokens, masks=True)
    conf, nms = threshold(cfg), cfg.pseudolabel.nms_iou
    mapping = plan.mapping
    labels: dict[str, np.ndarray] = {}
    soft: dict[str, np.ndarray] = {}
    rows: list[dict[str, Any]] = []
    kept_total = 0
    for i in tqdm(range(len(ids)), desc=f"{plan.method} chunk {k}", unit="img",
                  disable=not progress, leave=False):
        masks = emb.masks(i)
        scores = scorer(emb, i, masks)
        dec = decide(scores, masks, conf, nms)
        kept = np.flatnonzero(dec.kept)
        labels[ids[i]] = paint(masks[kept], mapping.class_ids[dec.class_index[kept]],
                               dec.confidence[kept], mapping.fill)
        soft[ids[i]] = mask_soft_maps(masks, dec.class_index, dec.confidence,
                                      len(mapping.labels))
        kept_total += len(kept)
        areas = masks.reshape(len(masks), -1).sum(1)
        for j in range(len(masks)):
            c = int(dec.class_index[j])
            rows.append({"round": plan.round, "method": plan.method, "image_id": ids[i],
                         "name": emb.names[i], "point_index": j, "label": mapping.labels[c],
                         "class_id": int(mapping.class_ids[c]),
                         "confidence": float(dec.confidence[j]), "kept": bool(dec.kept[j]),
                         "reason": dec.reason[j], "area": int(areas[j])})
    store.write_chunk(plan.paths.staging, k, labels, rows, soft)
    kill_point("pseudo.chunk")
    return ChunkStats(k, len(ids), len(rows), kept_total, round(time.perf_counter() - start, 3))
