"""SAM masks from the embed flow as region units of the active-learning pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segloop.active.pool import compute_regions
from segloop.active.sam_regions import resize_masks
from segloop.config import parse_config
from segloop.data.classes import CAMVID
from segloop.data.datasets import CamVidLayout
from segloop.embed import steps
from segloop.embed.store import read_embeddings
from segloop.errors import ConfigError, StoreError
from segloop.train.arrays import stack_split


def test_resize_masks_nearest_keeps_blocks() -> None:
    masks = np.zeros((1, 4, 6), bool)
    masks[0, :2, :4] = True  # sampled at pixel centres: rows 1, 3 and columns 1, 3, 5
    small = resize_masks(masks, (2, 3))
    assert small[0].tolist() == [[True, True, False], [False, False, False]]
    assert resize_masks(masks, (4, 6)) is masks


def test_pool_regions_from_embed_output(camvid_root: Path, tmp_path: Path) -> None:
    raw = {"data": {"root": str(camvid_root), "split": "train"},
           "models": {"sam": {"variant": "tiny", "seed": 1}},
           "embed": {"points_per_side": 4, "limit": 6}}
    cfg = parse_config(raw)
    out = str(tmp_path / "emb")
    plan = steps.plan(cfg, steps.open_input(cfg, camvid_root), out)
    for shard in plan.shards:
        steps.embed_shard(cfg, out, shard, progress=False)
    arrays = stack_split(CamVidLayout(str(camvid_root), "train", CAMVID), (12, 16))
    ac = parse_config({"active": {"region": {"source": "sam", "sam_embeddings": out}}}).active
    with pytest.raises(StoreError, match="no embeddings for 4 image id"):
        compute_regions(arrays, ac)  # 10 pool images, 6 embedded
    head = stack_split((CamVidLayout(str(camvid_root), "train", CAMVID).load(s) for s in
                        list(CamVidLayout(str(camvid_root), "train", CAMVID).samples())[:6]),
                       (12, 16))
    maps, counts = compute_regions(head, ac)
    assert maps.shape == (6, 12, 16) and maps.dtype == np.int32
    for m, c in zip(maps, counts, strict=True):
        assert sorted(np.unique(m)) == list(range(c))  # consecutive ids
    # the most confident mask of each image keeps (some of) its pixels
    got = read_embeddings(out, list(head.image_ids), tokens=False)
    best = int(np.argmax(got.iou[0]))
    resized = resize_masks(got.masks(0), (12, 16))[best]
    if resized.any():
        assert len(np.unique(maps[0][resized])) == 1


def test_sam_source_without_an_output_says_what_to_set(camvid_root: Path) -> None:
    arrays = stack_split(CamVidLayout(str(camvid_root), "train", CAMVID), (12, 16))
    ac = parse_config({"active": {"region": {"source": "sam"}}}).active
    with pytest.raises(ConfigError, match="active.region.sam_embeddings"):
        compute_regions(arrays, ac)


def test_pool_regions_from_clustered_sam_image_embeddings(camvid_root: Path,
                                                          tmp_path: Path) -> None:
    raw = {"data": {"root": str(camvid_root), "split": "train"},
           "models": {"sam": {"variant": "tiny", "seed": 1}},
           "embed": {"points_per_side": 2, "limit": 4, "image_embeddings": True}}
    cfg = parse_config(raw)
    out = str(tmp_path / "emb")
    plan = steps.plan(cfg, steps.open_input(cfg, camvid_root), out)
    for shard in plan.shards:
        steps.embed_shard(cfg, out, shard, progress=False)
    layout = CamVidLayout(str(camvid_root), "train", CAMVID)
    head = stack_split((layout.load(s) for s in list(layout.samples())[:4]), (12, 16))
    counts_by_tau = []
    for tau in (0.0, 0.9):
        ac = parse_config({"active": {"region": {"source": "clusters", "sam_embeddings": out,
                                                 "cluster_tau": tau}}}).active
        maps, counts = compute_regions(head, ac)
        assert maps.shape == (4, 12, 16) and maps.dtype == np.int32
        for m, c in zip(maps, counts, strict=True):
            assert sorted(np.unique(m)) == list(range(c))
        counts_by_tau.append(int(counts.sum()))
    assert counts_by_tau[1] > counts_by_tau[0]  # a higher threshold makes more regions
