"""Pseudo-label seeds in the loop: matched by image id, resized, never counted as labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segloop.active.pool import Pool
from segloop.active.seeds import Seeds, load_seeds, training_labels
from segloop.data.image_maps import ImageMaps
from segloop.errors import DataError
from segloop.train.arrays import SplitArrays

IGNORE = 11


def _pool(n: int = 3, hw: tuple[int, int] = (4, 6)) -> Pool:
    arrays = SplitArrays(images=torch.zeros((n, 3, *hw), dtype=torch.uint8), labels=None,
                         image_ids=tuple(f"id{i}" for i in range(n)),
                         names=tuple(f"n{i}" for i in range(n)), original_hw=((8, 12),) * n)
    return Pool(arrays, tuple(f"u{i}" for i in range(n)), None, None)


def _round(folder: Path, labels: dict[str, np.ndarray], pseudo: bool = True) -> Path:
    (folder / "labels").mkdir(parents=True)
    for image_id, label in labels.items():
        Image.fromarray(label).save(folder / "labels" / f"{image_id}.png")
    (folder / "round.json").write_text(json.dumps(
        {"method": "usam", "round": 2, "fingerprint": "abc", "pseudo": pseudo}))
    return folder


def test_seeds_are_matched_resized_and_abstain_becomes_ignore(tmp_path: Path) -> None:
    big = np.full((8, 12), 255, np.uint8)  # original size, abstain everywhere ...
    big[:4, :6] = 3  # ... except the top-left quarter
    folder = _round(tmp_path / "r", {"id0": big, "id2": np.full((8, 12), 5, np.uint8),
                                     "not-in-pool": np.zeros((8, 12), np.uint8)})
    seeds = load_seeds(_pool(), folder, num_classes=11, ignore_index=IGNORE)
    assert seeds.labels.shape == (3, 4, 6) and seeds.images == 2
    expected0 = np.full((4, 6), IGNORE, np.uint8)
    expected0[:2, :3] = 3
    np.testing.assert_array_equal(seeds.labels[0], expected0)
    assert (seeds.labels[1] == IGNORE).all() and (seeds.labels[2] == 5).all()
    assert seeds.pixels == 6 + 24
    assert seeds.summary() == {"pseudo_labelled_images": 2, "pseudo_labelled_pixels": 30,
                               "pseudolabels": "usam round 002"}


def test_human_labels_win_where_queried_void_answers_included() -> None:
    human = ImageMaps(2, (2, 2), np.uint8, IGNORE)
    queried = ImageMaps(2, (2, 2), bool, False)
    human.row(0)[0, 0], queried.row(0)[0, 0] = 1, True
    queried.row(0)[0, 1] = True  # asked, answered void: stays ignore, the seed is not used
    seeds = Seeds(ImageMaps.from_dense(
        np.stack([np.full((2, 2), 7, np.uint8), np.full((2, 2), IGNORE, np.uint8)]),
        IGNORE), "f", "usam", 0, "abc", 1, 4)
    out = training_labels(human, queried, seeds)
    assert out[:].tolist() == [[[1, IGNORE], [7, 7]], [[IGNORE, IGNORE], [IGNORE, IGNORE]]]
    assert out.indices().tolist() == [0]  # image 1 has neither labels nor seeds
    assert out.count_per_image().tolist() == [3, 0]
    assert training_labels(human, queried, None) is human


def test_seed_cache_reads_per_image_and_equals_the_in_memory_seeds(tmp_path: Path) -> None:
    """With a cache folder the seeds are written once in shards and read per image; every
    view of them (rows, counts, class counts, training labels) equals the in-memory one."""
    from segloop.active import seeds as seeds_mod
    from segloop.data.image_maps import class_counts, labelled_counts

    rng = np.random.default_rng(0)
    maps = {f"id{i}": rng.integers(0, 4, (8, 12)).astype(np.uint8) for i in (0, 2, 4)}
    maps["id2"][:3] = 255  # abstain
    folder = _round(tmp_path / "r", maps)
    pool = _pool(n=6)
    memory = load_seeds(pool, folder, 11, IGNORE)
    old = seeds_mod.SEED_SHARD
    seeds_mod.SEED_SHARD = 4  # two shards
    try:
        cached = load_seeds(pool, folder, 11, IGNORE, cache=tmp_path / "cache")
        again = load_seeds(pool, folder, 11, IGNORE, cache=tmp_path / "cache")
    finally:
        seeds_mod.SEED_SHARD = old
    assert sorted(p.name for p in (tmp_path / "cache").rglob("seeds-*.npy")) == [
        "seeds-00000.npy", "seeds-00001.npy"]
    assert not isinstance(cached.labels, ImageMaps)
    for s in (cached, again):
        assert (s.images, s.pixels) == (memory.images, memory.pixels)
        assert s.images == 3 and s.pixels == int((memory.labels[:] != IGNORE).sum())
        np.testing.assert_array_equal(s.labels[np.arange(6)], memory.labels[:])
    human = ImageMaps(6, (4, 6), np.uint8, IGNORE)
    queried = ImageMaps(6, (4, 6), bool, False)
    human.row(1)[:2], queried.row(1)[:2] = 9, True  # an image without seeds
    human.row(2)[0], queried.row(2)[0] = 10, True  # over a seeded one
    a = training_labels(human, queried, memory)
    b = training_labels(human, queried, cached)
    np.testing.assert_array_equal(a[:], b[:])
    np.testing.assert_array_equal(b[torch.tensor([5, 2, 2])], a[[5, 2, 2]])
    assert labelled_counts(b, IGNORE).tolist() == labelled_counts(a, IGNORE).tolist()
    np.testing.assert_array_equal(class_counts(b, 11, IGNORE), class_counts(a, 11, IGNORE))
    dense = a[:]
    np.testing.assert_array_equal(class_counts(b, 11, IGNORE), class_counts(dense, 11, IGNORE))
    assert b.copy().count_per_image().tolist() == labelled_counts(dense, IGNORE).tolist()


def test_bad_seed_rounds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a pseudo-label round"):
        load_seeds(_pool(), tmp_path, 11, IGNORE)
    folder = _round(tmp_path / "a", {"id0": np.full((8, 12), 40, np.uint8)})
    with pytest.raises(DataError, match=r"class ids \[40\]"):
        load_seeds(_pool(), folder, 11, IGNORE)
    folder = _round(tmp_path / "b", {"other": np.zeros((8, 12), np.uint8)})
    with pytest.raises(DataError, match="no pseudo-label for any of the 3 pool images"):
        load_seeds(_pool(), folder, 11, IGNORE)
    folder = _round(tmp_path / "c", {"id0": np.zeros((8, 12), np.uint8)}, pseudo=False)
    with pytest.raises(DataError, match="does not describe pseudo-labels"):
        load_seeds(_pool(), folder, 11, IGNORE)
