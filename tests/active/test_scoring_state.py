"""Scoring the pool (streamed, written to Parquet), label state and budget accounting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segloop.active.pool import Pool, compute_regions
from segloop.active.scoring import score_pool
from segloop.active.selection import Budget, select
from segloop.active.state import LabelState
from segloop.config import ActiveConfig
from segloop.data.classes import CAMVID
from segloop.data.datasets import CamVidLayout
from segloop.data.parquet import read_table
from segloop.data.schemas import SCORES
from segloop.testing import write_camvid
from segloop.train.arrays import stack_split
from segloop.train.models import build_model

IGNORE = 11


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pool, Pool]:
    root = tmp_path_factory.mktemp("cv")
    write_camvid(str(root), {"train": 6}, hw=(24, 32))
    arrays = stack_split(CamVidLayout(str(root), "train", CAMVID), None)
    regions, counts = compute_regions(arrays, ActiveConfig(region={"n_segments": 12}))
    uris = tuple(f"img{i}" for i in range(len(arrays)))
    return (Pool(arrays, uris, None, None), Pool(arrays, uris, regions, counts))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("unet", 11, width=4, depth=2)


@pytest.mark.parametrize("strategy", ["random", "entropy", "margin", "least_confidence",
                                      "uig", "uig_pixel", "bald"])
def test_image_level_scores_every_unlabelled_image_once(pools, model, strategy: str,
                                                        tmp_path: Path) -> None:
    pool = pools[0]
    state = LabelState.empty(pool, IGNORE)
    state.apply(pool, 2, [-1], pool.arrays.labels[2].numpy())
    path = tmp_path / "scores.parquet"
    units = score_pool(model, pool, state, strategy, "image", torch.device("cpu"),
                       round_number=3, seed=0, batch_size=4, mc_samples=3, table_path=path,
                       progress=False)
    assert sorted(u.image_index for u in units) == [0, 1, 3, 4, 5]
    assert all(u.pixels == 24 * 32 and u.region_id == -1 for u in units)
    table = read_table(str(path), SCORES)
    assert table.num_rows == 5 and set(table.column("strategy").to_pylist()) == {strategy}
    assert table.column("score").to_pylist() == [u.score for u in units]
    assert set(table.column("round").to_pylist()) == {3}


def test_region_level_excludes_queried_regions_and_accounts_pixels(pools, model) -> None:
    pool = pools[1]
    state = LabelState.empty(pool, IGNORE)
    state.apply(pool, 0, [0, 1], pool.arrays.labels[0].numpy())
    units = score_pool(model, pool, state, "uig", "region", torch.device("cpu"),
                       round_number=1, seed=0, progress=False)
    total_regions = int(pool.num_regions.sum())
    assert len(units) == total_regions - 2
    assert not any(u.image_index == 0 and u.region_id in (0, 1) for u in units)
    assert sum(u.pixels for u in units) + state.queried_pixels == pool.total_pixels
    assert state.clicks == 2
    budget = Budget(pixels=int(0.05 * pool.total_pixels))
    sel = select(units, budget)
    assert 0 < sel.spent_pixels <= budget.pixels
    assert sel.spent_pixels == sum(u.pixels for u in sel.units)


def test_state_paints_labels_only_inside_units(pools) -> None:
    pool = pools[1]
    state = LabelState.empty(pool, IGNORE)
    gt = pool.arrays.labels[1].numpy()
    state.apply(pool, 1, [3], gt)
    mask = pool.regions[1] == 3
    assert np.array_equal(state.labels[1][mask], gt[mask])
    assert (state.labels[1][~mask] == IGNORE).all() and (state.labels[0] == IGNORE).all()
    s = state.summary(pool)
    assert s["labelled_images"] == 1 and s["labelled_pixels"] == int(mask.sum())
    assert s["pixel_fraction"] == pytest.approx(mask.sum() / pool.total_pixels)


def test_scores_table_written_from_a_generator_in_chunks(tmp_path: Path) -> None:
    """The scores table takes rows as they are made (a generator), ``chunk`` at a time."""
    from segloop.active.scoring import write_scores

    made: list[int] = []

    def rows():  # type: ignore[no-untyped-def]
        for i in range(5):
            made.append(i)
            yield {"round": 1, "image_id": f"img{i}", "region_id": i, "strategy": "entropy",
                   "score": 0.1 * i, "pixels": 10, "pred_class": -1}

    write_scores(tmp_path / "scores.parquet", rows(), chunk=2)
    table = read_table(str(tmp_path / "scores.parquet"), SCORES)
    assert made == [0, 1, 2, 3, 4] and table.num_rows == 5
    assert table.column("region_id").to_pylist() == [0, 1, 2, 3, 4]


def test_units_have_slots_and_round_trip_as_dicts() -> None:
    import dataclasses

    from segloop.active.selection import Unit

    u = Unit(3, 7, 120, 0.5, 2)
    assert not hasattr(u, "__dict__")  # slots: a region candidate is a small object
    assert dataclasses.asdict(u) == {"image_index": 3, "region_id": 7, "pixels": 120,
                                     "score": 0.5, "pred_class": 2}
