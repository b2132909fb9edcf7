"""Refining a seed round with G4Seg into a round of its own (``pseudolabel.refine: g4seg``).

The input is any committed seed round that holds soft score maps (``scores/``): U-SAM,
SAM+CLIP, MaskDiffusion, or an earlier refinement. Its images are found in the data
section's dataset by content id; for each image, every label with a score inside the
uncertain band is refined by one G4Seg pass (labels with nothing in the band cannot
change and cost nothing), and each pixel then takes the label of highest refined score
(see :func:`decide`). The output family is ``<input method>-g4seg``
(``data/pseudolabels/usam-g4seg/round_NNN``, tag ``pseudolabels/usam-g4seg/rNNN``); its
``round.json`` names the input round, and a rerun with the same input and settings is a
no-op.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from segloop.config import Config
from segloop.data.base import Dataset
from segloop.errors import ConfigError, DataError
from segloop.faults import kill_point
from segloop.pseudolabel import store
from segloop.pseudolabel.image_label import ImageTargets
from segloop.pseudolabel.label_mapping import ABSTAIN, LabelMapping, map_labels
from segloop.pseudolabel.mask_label import ChunkStats, load_target
from segloop.pseudolabel.plan import STAGING_DIR, PseudoPaths, PseudoPlan, dataset_images, settle
from segloop.versioning import Workspace, ignore_in_workspace

SUFFIX = "-g4seg"


@dataclass(frozen=True)
class InputRound:
    """A committed seed round to refine: its folder, ``round.json`` and label order."""

    folder: Path
    rel: str
    meta: dict[str, Any]
    labels: tuple[str, ...]

    @property
    def method(self) -> str:
        return str(self.meta["method"])

    @property
    def image_methods(self) -> bool:
        return self.meta.get("inputs", {}).get("target") is None


def read_input(ws_root: Path, rel: str) -> InputRound:
    """The round at workspace-relative ``rel`` (clear errors when it is not a seed round
    with score maps)."""
    folder = ws_root / rel
    meta = store.read_round_meta(folder)
    labels = meta.get("labels")
    if not labels or not (folder / store.SCORES_DIR).is_dir():
        raise DataError(f"{folder} holds no score maps (scores/) or no label order in its "
                        "round.json: it was made before seed rounds stored them; make that "
                        "round again with the pseudolabel flow, then refine it")
    return InputRound(folder, rel, meta, tuple(labels))


def refine_settings(cfg: Config, source: InputRound) -> dict[str, Any]:
    """Every value that decides the refined round (its round.json ``settings``)."""
    return {"method": source.method + SUFFIX, "refine": "g4seg",
            "g4seg": cfg.pseudolabel.g4seg.model_dump(mode="json"),
            "threshold": threshold(cfg, source),
            "diffusion": cfg.models.diffusion.model_dump(mode="json"),
            "clip": cfg.models.clip.model_dump(mode="json"),
            "input": {"path": source.rel, "method": source.method,
                      "round": source.meta.get("round"),
                      "fingerprint": source.meta.get("fingerprint")},
            "dataset": {"name": cfg.data.name, "format": cfg.data.format,
                        "split": cfg.data.split}}


def threshold(cfg: Config, source: InputRound) -> float | None:
    """``pseudolabel.g4seg.threshold`` resolved ("auto": the input's ``conf`` for mask
    methods, None for image methods, which label every pixel)."""
    t = cfg.pseudolabel.g4seg.threshold
    if t != "auto":
        return None if t is None else float(t)
    if source.image_methods:
        return None
    conf = source.meta.get("settings", {}).get("conf")
    return None if conf is None else float(conf)


def mapping_of(cfg: Config, source: InputRound) -> LabelMapping:
    """The input round's label -> class id mapping (as its round.json recorded it)."""
    recorded = source.meta.get("settings", {}).get("mapping", {})
    class_map = {label: v["class"] for label, v in recorded.get("labels", {}).items()}
    bg = recorded.get("background")
    return map_labels(source.labels, cfg.data.classes, class_map,
                      None if bg is None else bg["class"])


def plan_refinement(cfg: Config, ws: Workspace, dataset: Dataset, rel: str) -> PseudoPlan:
    """The refinement of round ``rel``: its images (the input round's label maps found in
    ``dataset`` by content id), output family, fingerprint and staging folder."""
    source = read_input(ws.root, rel)
    method = source.method + SUFFIX
    ignore_in_workspace(ws, [f"/{STAGING_DIR.split('/')[0]}/"])
    ids_in_round = {p.stem for p in (source.folder / store.LABELS_DIR).glob("*.png")}
    ids, names = dataset_images(dataset, None)
    missing = sorted(ids_in_round - set(ids))
    if missing:
        raise DataError(f"{len(missing)} image(s) of {rel} (e.g. {missing[0]}) are not in the "
                        "data section's dataset (by content): point data.* at the dataset "
                        "the round was made from")
    ids = [i for i in ids if i in ids_in_round]
    output = str(Path(rel).parent.parent / method) if rel.count("/") >= 2 else \
        f"data/pseudolabels/{method}"
    paths = PseudoPaths(source="", manifest="", target="", output_rel=output,
                        staging=ws.root / STAGING_DIR / method)
    settings = refine_settings(cfg, source)
    text = json.dumps({"settings": settings, "images": sorted((i, names[i]) for i in ids)},
                      sort_keys=True)
    fp = hashlib.sha256(text.encode()).hexdigest()[:16]
    size = cfg.pseudolabel.chunk_size
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    plan = PseudoPlan(method, 0, fp, settings, paths, mapping_of(cfg, source), ids,
                      {i: names[i] for i in ids}, chunks, reads_images=True,
                      refines=settings["input"])
    return settle(ws, plan)


@dataclass
class Refiner:
    """What refines a chunk: the G4Seg model, the input round and the target images."""

    model: Any  # segloop.pseudolabel.g4seg.G4Seg
    source: InputRound
    targets: ImageTargets
    threshold: float | None


def make_refiner(cfg: Config, plan: PseudoPlan, dataset: Dataset, ws_root: Path) -> Refiner:
    """G4Seg with the configured pipeline and CLIP, loaded by the real loaders (a missing
    model raises :class:`~segloop.errors.ModelNotFoundError` saying where it looked)."""
    from segloop.models.clip import load_clip
    from segloop.models.diffusion import load_from_config
    from segloop.pseudolabel.g4seg import G4Seg, G4SegSettings

    clip_cfg = cfg.models.clip
    if not clip_cfg.model_id:
        raise ConfigError("pseudolabel.refine g4seg needs CLIP for its dense correspondence: "
                          "set models.clip.model_id (e.g. openai/clip-vit-base-patch16, or "
                          "tiny)")
    assert plan.refines is not None
    source = read_input(ws_root, plan.refines["path"])
    pipe = load_from_config(cfg.models.diffusion, cfg.base.device, cfg.base.dtype).pipe
    clip = load_clip(clip_cfg.model_id, local_files_only=clip_cfg.local_files_only,
                     device=cfg.base.device)
    g = cfg.pseudolabel.g4seg
    settings = G4SegSettings(**g.model_dump(exclude={"threshold"}))
    return Refiner(G4Seg(pipe, clip, settings), source, ImageTargets.of(dataset),
                   threshold(cfg, source))


def resize_scores(scores: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(C, h, w) float -> (C, H, W) float32 in [0, 1] (bilinear)."""
    if scores.shape[1:] == tuple(hw):
        return scores.astype(np.float32)
    t = F.interpolate(torch.from_numpy(scores.astype(np.float32))[None], size=tuple(hw),
                      mode="bilinear", align_corners=False)[0]
    return t.clamp(0, 1).numpy()


def decide(refined: np.ndarray, class_ids: np.ndarray, fill: int, thr: float | None,
           before: np.ndarray) -> np.ndarray:
    """(C, H, W) refined scores and the input round's (H, W) labels -> (H, W) uint8
    labels: the label of highest refined score where it reaches ``thr`` (and is positive:
    no mask covered a pixel whose scores are all 0), else ``fill``
    (the rule of mask methods); ``thr`` None (image methods, which label every pixel): the
    label of highest refined score wherever the input did not abstain."""
    best = np.asarray(class_ids, np.int64)[refined.argmax(0)].astype(np.uint8)
    if thr is None:
        return np.where(before == ABSTAIN, np.uint8(ABSTAIN), best)
    top = refined.max(0)
    return np.where((top >= thr) & (top > 0), best, np.uint8(fill))


def refine_image(refiner: Refiner, image: np.ndarray, coarse: np.ndarray
                 ) -> tuple[np.ndarray, int]:
    """(H, W, 3) uint8 and (C, H, W) coarse maps -> (C, H, W) refined maps and the number
    of labels refined (only those with a score inside the band: the others cannot move)."""
    low, high = refiner.model.settings.band
    out = coarse.copy()
    todo = [c for c in range(len(coarse))
            if ((coarse[c] >= low) & (coarse[c] <= high)).any()]
    if todo:
        refined = refiner.model.refine_all(image, coarse[todo],
                                           [refiner.source.labels[c] for c in todo])
        out[todo] = refined
    return out, len(todo)


def refine_chunk(plan: PseudoPlan, k: int, refiner: Refiner, progress: bool = True
                 ) -> ChunkStats:
    """Refine chunk ``k`` and commit it to the staging folder (labels, scores, part)."""
    start = time.perf_counter()
    labels: dict[str, np.ndarray] = {}
    soft: dict[str, np.ndarray] = {}
    refined_maps = 0
    for image_id in tqdm(plan.chunks[k], desc=f"{plan.method} chunk {k}", unit="img",
                         disable=not progress, leave=False):
        loaded = load_target(refiner.targets.dataset, refiner.targets.samples,
                             plan.names[image_id], image_id)
        hw = loaded.image.shape[:2]
        coarse = resize_scores(store.read_scores(refiner.source.folder, image_id), hw)
        if coarse.shape[0] != len(plan.mapping.labels):
            raise DataError(f"{refiner.source.folder}: scores of {image_id} have "
                            f"{coarse.shape[0]} maps for {len(plan.mapping.labels)} labels")
        refined, n = refine_image(refiner, loaded.image, coarse)
        refined_maps += n
        before = store.read_label(refiner.source.folder, image_id)
        labels[image_id] = decide(refined, plan.mapping.class_ids, plan.mapping.fill,
                                  refiner.threshold, before)
        soft[image_id] = refined
    store.write_chunk(plan.paths.staging, k, labels, [], soft)
    kill_point("pseudo.chunk")
    return ChunkStats(k, len(plan.chunks[k]), 0, 0, round(time.perf_counter() - start, 3),
                      refined_maps)


__all__ = ["ABSTAIN", "InputRound", "Refiner", "decide", "make_refiner", "mapping_of",
           "plan_refinement", "read_input", "refine_chunk", "refine_image", "resize_scores",
           "threshold"]
