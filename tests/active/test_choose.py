"""Selection strategies on a pool of duplicated images, where the right answer is obvious."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segloop.active.choose import choose, rarity_weights
from segloop.active.pool import Pool
from segloop.active.scoring import PoolScan
from segloop.active.selection import Budget, Unit
from segloop.active.state import LabelState
from segloop.config import ActiveConfig
from segloop.errors import ConfigError
from segloop.train.arrays import SplitArrays

IGNORE = 11
GROUPS, COPIES = 4, 5  # 4 distinct scenes, each present 5 times (video frames)


def _pool(n: int = GROUPS * COPIES, hw: tuple[int, int] = (4, 4)) -> Pool:
    arrays = SplitArrays(torch.zeros(n, 3, *hw, dtype=torch.uint8),
                         torch.zeros(n, *hw, dtype=torch.uint8),
                         tuple(f"id{i}" for i in range(n)), tuple(f"f{i}" for i in range(n)),
                         ((4, 4),) * n)
    return Pool(arrays, (), None, None)


def _scan(pool: Pool) -> PoolScan:
    """Scene 0's copies are the most uncertain (0.9..), then scene 1 (0.8..), ..."""
    group = torch.arange(len(pool)) // COPIES
    feats = torch.nn.functional.one_hot(group, GROUPS).float() * 3.0
    units = [Unit(i, -1, 16, 0.9 - 0.1 * int(group[i]) - 0.001 * (i % COPIES), int(group[i]))
             for i in range(len(pool))]
    grads = feats.repeat(1, 2) * torch.tensor([0.9 - 0.1 * g for g in group.tolist()])[:, None]
    fractions = torch.nn.functional.one_hot(group, GROUPS).float()
    return PoolScan(units, feats, fractions, grads)


def _scenes(selection) -> list[int]:  # type: ignore[no-untyped-def]
    return [u.image_index // COPIES for u in selection.units]


def _ac(**kw) -> ActiveConfig:  # type: ignore[no-untyped-def]
    return ActiveConfig(**{"dedup_similarity": None, "class_balance": "none",
                           "diversity": "none", **kw})


@pytest.fixture
def pool_state() -> tuple[Pool, LabelState]:
    pool = _pool()
    return pool, LabelState.empty(pool, IGNORE)


def _pick(pool_state, ac: ActiveConfig, strategy: str = "entropy"):  # type: ignore[no-untyped-def]
    pool, state = pool_state
    return choose(_scan(pool), pool, state, ac, Budget(units=4),
                  torch.Generator().manual_seed(0), strategy=strategy)


def test_top_k_uncertainty_picks_copies_of_one_scene(pool_state) -> None:
    assert _scenes(_pick(pool_state, _ac()).selection) == [0, 0, 0, 0]


@pytest.mark.parametrize("ac", [_ac(diversity="cluster"), _ac(diversity="coverage"),
                                _ac(diversity="stratified"), _ac(dedup_similarity=0.95)],
                         ids=["cluster", "coverage", "stratified", "dedup"])
def test_diversity_never_picks_two_copies(pool_state, ac: ActiveConfig) -> None:
    choice = _pick(pool_state, ac)
    assert sorted(_scenes(choice.selection)) == [0, 1, 2, 3]
    # most uncertain copy of each scene
    assert all(u.image_index % COPIES == 0 for u in choice.selection.units)


def test_badge_and_typiclust_never_pick_two_copies(pool_state) -> None:
    for strategy in ("badge", "typiclust"):
        choice = _pick(pool_state, _ac(), strategy)
        assert sorted(_scenes(choice.selection)) == [0, 1, 2, 3], strategy


def test_rarity_weights_pick_the_rare_class_first() -> None:
    pool = _pool(n=6)
    state = LabelState.empty(pool, IGNORE)
    # images 0-4 predicted all class 0 (common), image 5 all class 1 (rare); equal scores
    fractions = torch.zeros(6, 3)
    fractions[:5, 0] = 1.0
    fractions[5, 1] = 1.0
    w = rarity_weights(fractions)
    assert w.tolist() == pytest.approx([np.exp(-5 / 6), np.exp(-1 / 6), 1.0])
    units = [Unit(i, -1, 16, 0.5, 0 if i < 5 else 1) for i in range(6)]
    scan = PoolScan(units, torch.eye(6), fractions, None)
    gen = torch.Generator().manual_seed(0)
    plain = choose(scan, pool, state, _ac(), Budget(units=1), gen)
    assert [u.image_index for u in plain.selection.units] == [0]  # tie: smallest index
    balanced = choose(scan, pool, state, _ac(class_balance="rarity"), Budget(units=1), gen)
    assert [u.image_index for u in balanced.selection.units] == [5]
    rows = list(balanced.rows(pool, 1, "entropy"))
    assert rows[5]["uncertainty"] == 0.5 and rows[5]["class_weight"] == pytest.approx(
        np.exp(-1 / 6))
    assert rows[5]["score"] == pytest.approx(0.5 * np.exp(-1 / 6))


def test_rows_record_clusters_and_badge_is_image_level(pool_state) -> None:
    pool, state = pool_state
    choice = _pick(pool_state, _ac(diversity="cluster"))
    rows = list(choice.rows(pool, 2, "entropy"))
    assert len(rows) == len(pool) and {r["round"] for r in rows} == {2}
    by_scene: dict[int, set[int]] = {}
    for i, r in enumerate(rows):
        by_scene.setdefault(i // COPIES, set()).add(r["cluster"])
    assert all(len(c) == 1 for c in by_scene.values())  # copies share a cluster
    assert len({next(iter(c)) for c in by_scene.values()}) == GROUPS
    with pytest.raises(ConfigError, match="active.level: image"):
        choose(_scan(pool), pool, state, _ac(level="region"), Budget(units=1),
               torch.Generator().manual_seed(0), strategy="badge")


def test_coverage_goes_to_uncovered_scenes_first(pool_state) -> None:
    pool, state = pool_state
    # scenes 0 and 1 (the most uncertain) already have labelled copies: one, and two
    for i in (1, COPIES + 1, COPIES + 2):
        state.apply(pool, i, [-1], np.zeros((4, 4), dtype=np.uint8))
    choice = choose(_scan(pool), pool, state, _ac(diversity="coverage"), Budget(units=3),
                    torch.Generator().manual_seed(0))
    scenes = _scenes(choice.selection)
    # the two uncovered scenes first (each by its most uncertain copy), then scene 0
    assert sorted(scenes[:2]) == [2, 3] and scenes[2] == 0
    assert all(u.image_index % COPIES == 0 for u in choice.selection.units)


def test_stratified_follows_scene_sizes(pool_state) -> None:
    pool, state = pool_state
    scan = _scan(pool)
    # scene 3 (the least uncertain) is 3x as common: its copies become 15 of 30 images
    feats = torch.cat([scan.features, scan.features[-COPIES:].repeat(2, 1)])
    big = _pool(n=len(pool) + 2 * COPIES)
    units = scan.units + [Unit(len(pool) + i, -1, 16, 0.5 - 0.001 * i, 3)
                          for i in range(2 * COPIES)]
    choice = choose(PoolScan(units, feats, None, None), big, LabelState.empty(big, IGNORE),
                    _ac(diversity="stratified"), Budget(units=6),
                    torch.Generator().manual_seed(0))
    # 6 picks over scenes of 5, 5, 5, 15 images: 1, 1, 1, 3; the rest of each scene's
    # picks are its most uncertain images
    assert sorted(_scenes(choice.selection)) == [0, 1, 2, 3, 3, 3]
    assert sorted(u.image_index for u in choice.selection.units
                  if u.image_index // COPIES == 3) == [15, 16, 17]
