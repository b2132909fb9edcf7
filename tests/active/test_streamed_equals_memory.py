"""The streamed pool (the loop's cache on disk) against the pool loaded in memory, on real
CamVid images: the same initial set, the same scores and the same selection with the same
seed, at image and region level; scanning in shards (the flow's mapped scoring tasks)
picks the same units as one pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segloop.active.fit import fit_round, initial_choice, select_round
from segloop.active.loop import simulated_labels
from segloop.active.pool import build_pool
from segloop.active.selection import Budget
from segloop.active.state import LabelState
from segloop.config import Config, parse_config

CPU = torch.device("cpu")


def _config(root: Path, level: str, shard_images: int = 1024) -> Config:
    return parse_config({
        "base": {"seed": 3},
        "data": {"root": str(root)},
        "train": {"model": "unet", "width": 4, "depth": 2, "steps": 6, "batch_size": 2},
        "active": {"image_size": [36, 48], "level": level, "pool_limit": 14,
                   "limit_spread": True, "region": {"n_segments": 20}},
        "runner": {"score_shard_images": shard_images},
    })


def _units(choice) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    return [(u.image_index, u.region_id) for u in choice.selection.units]


@pytest.mark.parametrize("level", ["image", "region"])
def test_streamed_pool_scores_and_selects_like_the_pool_in_memory(
        shared_camvid: Path, tmp_path: Path, level: str) -> None:
    cfg = _config(shared_camvid, level)
    memory = build_pool(cfg, str(shared_camvid))
    streamed = build_pool(cfg, str(shared_camvid), tmp_path / "cache")
    assert memory.arrays.image_ids == streamed.arrays.image_ids
    budget = (Budget(units=2) if level == "image"
              else Budget(pixels=memory.total_pixels // 50))
    states, picks = [], []
    for pool in (memory, streamed):
        state = LabelState.empty(pool, 11)
        first = initial_choice(pool, state, cfg, budget)
        for i, label in simulated_labels(pool, first.selection, "dominant", 11).items():
            state.apply(pool, i, [u.region_id for u in first.selection.units
                                  if u.image_index == i], label)
        states.append(state)
        picks.append(_units(first))
    assert picks[0] == picks[1] and picks[0]
    model, _ = fit_round(memory, states[0], states[0].labels, cfg, 0, CPU, progress=False)
    scans = [select_round(model, pool, state, cfg, budget, 1, CPU, progress=False)
             for pool, state in zip((memory, streamed), states, strict=True)]
    (a, scan_a, _), (b, scan_b, _) = scans
    # same inputs, same batches, same process: the same floats
    assert [(u.image_index, u.region_id, u.score) for u in scan_a.units] == [
        (u.image_index, u.region_id, u.score) for u in scan_b.units]
    assert _units(a) == _units(b) and _units(a)
    # in shards of 4 images (as the flow's scoring tasks): the same units and picks
    sharded = _config(shared_camvid, level, shard_images=4)
    c, scan_c, _ = select_round(model, streamed, states[1], sharded, budget, 1, CPU,
                                progress=False)
    assert [(u.image_index, u.region_id) for u in scan_c.units] == [
        (u.image_index, u.region_id) for u in scan_a.units]
    assert [u.score for u in scan_c.units] == pytest.approx([u.score for u in scan_a.units],
                                                            rel=1e-5, abs=1e-6)
    assert _units(c) == _units(a)
