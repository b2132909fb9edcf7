"""Seeds by feature clustering and seeded region growing (``pseudolabel.method: clusters``;
Kim 2022, ch. 3; docs/algorithms.md §3).

Input: a committed seed round with soft score maps (``pseudolabel.clusters.coarse``; any
method: U-SAM, SAM+CLIP, MaskDiffusion, a G4Seg refinement) for the coarse class maps,
and per-patch features of the same images (``clusters.features``): ``sam``, the SAM image
embeddings of the embed output at ``pseudolabel.target`` (made with
``embed.image_embeddings: true``), or ``maskdiffusion``, MaskDiffusion's UNet decoder
features (``models.diffusion``, ``pseudolabel.maskdiffusion``'s settings, an empty
prompt). Per image:

1. the features (for SAM, the embedding's valid part: SAM pads the image to a square) are
   clustered into superpixels by the greedy low-first rule (``tau``), upsampled to the
   label size;
2. the coarse maps, normalised per present class to [0, 1] (``normalise``), give seeds:
   pixels whose best map exceeds ``alpha`` take that label; with a background class, the
   superpixel of lowest mean best score is background; the rest abstains (255);
3. with ``grow``, seeds grow over superpixels: a superpixel whose non-seed pixels' mean
   class score exceeds ``beta`` takes that class. The thesis grows with the segmentation
   model's softmax during training; here, before any training, the class scores are the
   coarse maps (background: 1 - the best map), which is the stated substitute.

The round's ``scores/`` are the normalised coarse maps, so it can be refined or
clustered again. Growing with a model's softmax during training is
:func:`segloop.pseudolabel.cam_seeds.grow_seeds` on that softmax.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from segloop.config import Config
from segloop.data.base import Dataset
from segloop.embed.store import read_image_embeddings
from segloop.errors import ConfigError
from segloop.faults import kill_point
from segloop.pseudolabel import store
from segloop.pseudolabel.cam_seeds import grow_seeds, normalise_maps, seeds_from_maps
from segloop.pseudolabel.clustering import cluster_feature_map
from segloop.pseudolabel.image_label import ImageTargets, about_image
from segloop.pseudolabel.label_mapping import ABSTAIN, LabelMapping
from segloop.pseudolabel.mask_label import ChunkStats, load_target
from segloop.pseudolabel.plan import (
    STAGING_DIR,
    PseudoPlan,
    dataset_images,
    resolve_paths,
    settle,
    target_images,
)
from segloop.pseudolabel.refine import InputRound, mapping_of, read_input, resize_scores
from segloop.versioning import Workspace, ignore_in_workspace


def valid_sam_grid(embedding: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(C, G, G) SAM image embedding of an (H, W) image -> (C, g_h, g_w): the cells the
    image covers (SAM resizes the longest side to its input size and pads the rest)."""
    c, gh, gw = embedding.shape
    h, w = image_hw
    side = max(h, w)
    return embedding[:, : max(1, math.ceil(gh * h / side)), : max(1, math.ceil(gw * w / side))]


def seed_image(features: np.ndarray, coarse: np.ndarray, mapping: LabelMapping,
               settings: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """One image: features (D, h, w) float, coarse maps (C, H, W) in [0, 1] over the
    mapping's C labels -> ((H, W) uint8 seeds in target class ids, (C, H, W) float32 maps
    used). ``settings``: tau, alpha, beta, grow, normalise (ClustersConfig's fields)."""
    hw = coarse.shape[1:]
    regions = cluster_feature_map(features.astype(np.float32), settings["tau"], out_hw=hw)
    maps = coarse.astype(np.float32)
    if settings["normalise"]:
        maps = normalise_maps(maps, present=maps.max(axis=(1, 2)) > 0)
    # a background the method names as a label is a class like any other (no region rule)
    bg = mapping.background if mapping.background not in set(mapping.class_ids.tolist()) \
        else None
    seeds = seeds_from_maps(maps, regions, mapping.class_ids, settings["alpha"], bg, ABSTAIN)
    if settings["grow"]:
        num = int(max(mapping.class_ids.max(), mapping.background or 0)) + 1
        probs = np.zeros((num, *hw), np.float32)
        for c, cid in enumerate(mapping.class_ids):
            probs[int(cid)] = np.maximum(probs[int(cid)], maps[c])
        if bg is not None:
            probs[bg] = 1.0 - maps.max(0)
        seeds = grow_seeds(seeds, regions, probs, settings["beta"], ABSTAIN)
    return seeds, maps


def plan_clusters(cfg: Config, ws: Workspace, dataset: Dataset | None = None) -> PseudoPlan:
    """The clusters round: the coarse round's images that the embed output (target; SAM
    features) or the data section's ``dataset`` (MaskDiffusion features) holds, their
    names, fingerprint of settings and inputs, staging folder."""
    p = cfg.pseudolabel
    if not p.clusters.coarse:
        raise ConfigError("pseudolabel.method clusters needs coarse class maps: set "
                          "pseudolabel.clusters.coarse to a seed round folder, e.g. "
                          "data/pseudolabels/maskdiffusion/round_000")
    source = read_input(ws.root, p.clusters.coarse)
    paths = resolve_paths(cfg, ws.root)
    ignore_in_workspace(ws, [f"/{STAGING_DIR.split('/')[0]}/"])
    sam = p.clusters.features == "sam"
    if sam:
        ids, names = target_images(paths.target, None)
    elif dataset is None:
        raise ConfigError("clusters.features maskdiffusion reads the images: the plan needs "
                          "the data section's dataset")
    else:
        ids, names = dataset_images(dataset, None)
    in_round = {q.stem for q in (source.folder / store.LABELS_DIR).glob("*.png")}
    ids = [i for i in ids if i in in_round]
    if not ids:
        raise ConfigError(
            f"no image of {p.clusters.coarse} is in the embed output {paths.target}: embed "
            "the images the round labels (with embed.image_embeddings: true) and point "
            "pseudolabel.target there" if sam else
            f"no image of {p.clusters.coarse} is in the data section's dataset: point data.* "
            "at the dataset the round was made from")
    settings = {"method": "clusters", "clusters": p.clusters.model_dump(mode="json"),
                **({} if sam else {
                    "maskdiffusion": p.maskdiffusion.model_dump(mode="json"),
                    "diffusion": cfg.models.diffusion.model_dump(mode="json")}),
                "coarse": {"path": source.rel, "method": source.method,
                           "round": source.meta.get("round"),
                           "fingerprint": source.meta.get("fingerprint")},
                "mapping": mapping_of(cfg, source).to_dict()}
    text = json.dumps({"settings": settings, "images": sorted((i, names[i]) for i in ids),
                       "target": _embed_files(paths.target) if sam else None},
                      sort_keys=True)
    size = p.chunk_size
    plan = PseudoPlan("clusters", 0, hashlib.sha256(text.encode()).hexdigest()[:16], settings,
                      paths, mapping_of(cfg, source), ids, {i: names[i] for i in ids},
                      [ids[i : i + size] for i in range(0, len(ids), size)],
                      reads_images=True, refines=settings["coarse"])
    return settle(ws, plan)


def _embed_files(target: str) -> list[tuple[str, int]]:
    from segloop.data.fs import parquet_fingerprint

    return parquet_fingerprint(target, "images")


@dataclass
class ClusterWorker:
    """The coarse round, the settings, and for MaskDiffusion features the model and the
    target images."""

    source: InputRound
    settings: dict[str, Any]
    model: Any = None  # segloop.pseudolabel.maskdiffusion.MaskDiffusion
    targets: ImageTargets | None = None


def make_worker(cfg: Config, plan: PseudoPlan, dataset: Dataset | None = None
                ) -> ClusterWorker:
    """What a chunk needs (a MaskDiffusion pipeline loaded by the real loader when the
    features are MaskDiffusion's)."""
    assert plan.refines is not None
    source = read_input(plan.workspace_root, plan.refines["path"])
    settings = cfg.pseudolabel.clusters.model_dump()
    if settings["features"] == "sam":
        return ClusterWorker(source, settings)
    if dataset is None:
        raise ConfigError("clusters.features maskdiffusion needs the data section's dataset")
    from segloop.models.diffusion import load_from_config
    from segloop.pseudolabel.image_label import maskdiffusion_settings
    from segloop.pseudolabel.maskdiffusion import MaskDiffusion

    pipe = load_from_config(cfg.models.diffusion, cfg.base.device, cfg.base.dtype).pipe
    return ClusterWorker(source, settings, MaskDiffusion(pipe, maskdiffusion_settings(cfg)),
                         ImageTargets.of(dataset))


def _features(plan: PseudoPlan, worker: ClusterWorker, ids: list[str], k: int
              ) -> list[np.ndarray] | np.ndarray:
    if worker.model is None:
        return read_image_embeddings(plan.paths.target, ids)
    assert worker.targets is not None
    out = []
    for image_id in ids:
        loaded = load_target(worker.targets.dataset, worker.targets.samples,
                             plan.names[image_id], image_id)
        with about_image(plan, image_id, k):
            out.append(worker.model.extract(loaded.image, "", [])[0].numpy())
    return out


def cluster_chunk(plan: PseudoPlan, k: int, worker: ClusterWorker, progress: bool = True
                  ) -> ChunkStats:
    """Seed chunk ``k`` and commit it to the staging folder (labels, scores, part)."""
    start = time.perf_counter()
    ids = plan.chunks[k]
    features_of = _features(plan, worker, ids, k)
    labels: dict[str, np.ndarray] = {}
    soft: dict[str, np.ndarray] = {}
    for n, image_id in enumerate(tqdm(ids, desc=f"clusters chunk {k}", unit="img",
                                      disable=not progress, leave=False)):
        hw = store.read_label(worker.source.folder, image_id).shape
        coarse = resize_scores(store.read_scores(worker.source.folder, image_id), hw)
        features = (valid_sam_grid(features_of[n].astype(np.float32), hw)
                    if worker.model is None else features_of[n])
        labels[image_id], soft[image_id] = seed_image(features, coarse, plan.mapping,
                                                      worker.settings)
    store.write_chunk(plan.paths.staging, k, labels, [], soft)
    kill_point("pseudo.chunk")
    return ChunkStats(k, len(ids), 0, 0, round(time.perf_counter() - start, 3))
