"""Fake embed outputs and synthetic manifests, written through segloop's own writers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from segloop.config import Config
from segloop.context import open_workspace
from segloop.data.base import Dataset
from segloop.data.parquet import write_table
from segloop.data.schemas import SYNTHETIC_MANIFEST
from segloop.embed.extract import ImageMasks
from segloop.embed.store import ShardWriter
from segloop.embed.tables import EmbeddedImage
from segloop.pseudolabel import mask_label as label_step
from segloop.pseudolabel import plan
from segloop.versioning import Workspace


def image_masks(tokens: np.ndarray, masks: np.ndarray) -> ImageMasks:
    """An :class:`ImageMasks` with given tokens (P, 1024) and masks (P, H, W) bool."""
    p = len(tokens)
    boxes = np.zeros((p, 4), np.int32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(ys):
            boxes[i] = [xs.min(), ys.min(), xs.max(), ys.max()]
    return ImageMasks(points=np.zeros((p, 2), np.float32), tokens=tokens.astype(np.float32),
                      best=np.zeros(p, np.int8), iou=np.full(p, 0.9, np.float32),
                      stability=np.full(p, 0.95, np.float32), masks=masks.astype(bool),
                      boxes=boxes, areas=masks.reshape(p, -1).sum(1).astype(np.int64))


def write_embeddings(out: str, images: dict[str, tuple[np.ndarray, np.ndarray]],
                     shard_size: int = 3, source: str = "synthetic") -> None:
    """Write ``{image_id: (tokens (P, 1024), masks (P, H, W))}`` as embed-flow shards."""
    ids = list(images)
    for shard, start in enumerate(range(0, len(ids), shard_size)):
        with ShardWriter(out, source, shard) as writer:
            for image_id in ids[start : start + shard_size]:
                tokens, masks = images[image_id]
                writer.add(EmbeddedImage(image_id, f"name-{image_id}",
                                         image_masks(tokens, masks), masks.shape[1:]))


def write_manifest(path: Path, labels: dict[str, list[str]], order: list[str]) -> None:
    """A synthetic manifest: one row per (image id, label); ``order`` gives class_index."""
    rows = []
    now = datetime.now(UTC)
    for image_id, names in labels.items():
        for label in names:
            rows.append({
                "image_id": image_id, "name": f"{label}/{image_id}.png", "split": "synthetic",
                "source": "synthetic", "image_uri": f"{label}/{image_id}.png",
                "label_uri": None, "height": 8, "width": 8, "n_bytes": 1, "label": label,
                "class_name": label, "class_index": order.index(label), "index": 0,
                "template": "a photo of a {c}", "prompt": f"a photo of a {label}",
                "negative_prompt": "", "seed": 0, "steps": 1, "guidance": 7.5,
                "scheduler": "pndm", "model_id": "tiny", "revision": None, "seconds": 0.1,
                "clip_score": None, "created_at": now})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(str(path), SYNTHETIC_MANIFEST, rows)


def image_method_plan(cfg: Config, root: Path) -> tuple[Workspace, Dataset, plan.PseudoPlan]:
    """The workspace, the data section's dataset and the plan of an image method."""
    ws = open_workspace(cfg)
    dataset = label_step.target_dataset(cfg, str(root))
    return ws, dataset, plan.plan(cfg, ws, dataset)
