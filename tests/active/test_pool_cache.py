"""The working-resolution cache: same pixels as loading in memory, resumable, read by index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segloop.active.pool_cache import ShardedArray, build_cache, cache_key, open_cache
from segloop.active.pool_manifest import read_manifest
from segloop.active.regions import slic_regions
from segloop.data.classes import CAMVID
from segloop.data.datasets import open_dataset
from segloop.errors import DataError
from segloop.testing import write_camvid
from segloop.train.arrays import stack_split

SIZE = (16, 24)


@pytest.fixture
def dataset(tmp_path: Path):  # type: ignore[no-untyped-def]
    write_camvid(str(tmp_path / "camvid"), {"train": 11}, hw=(24, 32))
    return open_dataset("camvid", str(tmp_path / "camvid"), "train", CAMVID)


def _regions(images: np.ndarray, image_ids: list[str]) -> np.ndarray:
    return np.stack([slic_regions(img, 12, 10.0) for img in images])


def test_the_cache_holds_what_loading_in_memory_gives(dataset, tmp_path: Path) -> None:
    samples = list(dataset.samples())
    info = build_cache(tmp_path / "cache", samples, dataset.load, SIZE, {"k": 1},
                       shard_size=4, regions=_regions, group=lambda n: n.split("_")[0],
                       split="train")
    ref = stack_split((dataset.load(s) for s in samples), SIZE)
    assert (info.n, info.hw, info.has_labels, info.has_regions) == (11, SIZE, True, True)
    images = ShardedArray(info, "images")
    labels = ShardedArray(info, "labels")
    assert images.shape == tuple(ref.images.shape) and len(images) == 11
    assert torch.equal(images[:], ref.images) and torch.equal(labels[:], ref.labels)
    pick = torch.tensor([10, 0, 5, 5, 3])  # any order, repeats, across shards
    assert torch.equal(images[pick], ref.images[pick])
    assert torch.equal(images[3], ref.images[3]) and torch.equal(images[-1], ref.images[-1])
    assert torch.equal(images[2:9], ref.images[2:9])
    got = [sl for sl, _ in images.batches(4)]
    assert got == [slice(0, 4), slice(4, 8), slice(8, 11)]
    regions = ShardedArray(info, "regions", as_tensor=False)
    want = _regions(ref.images.permute(0, 2, 3, 1).numpy(), [])
    assert np.array_equal(regions[:], want)
    assert np.array_equal(np.load(info.folder / "num_regions.npy"),
                          want.reshape(11, -1).max(1) + 1)
    rows = read_manifest(info.folder / "manifest.parquet")
    assert [r["image_id"] for r in rows] == list(ref.image_ids)
    assert [r["index"] for r in rows] == list(range(11))
    assert {r["group"] for r in rows} <= {s.name.split("_")[0] for s in samples}
    assert open_cache(info.folder) == info
    with pytest.raises(IndexError):
        images[torch.tensor([11])]


def test_a_killed_build_resumes_without_decoding_finished_shards(dataset,
                                                                 tmp_path: Path) -> None:
    samples = list(dataset.samples())
    calls: list[str] = []

    def dying(sample):  # type: ignore[no-untyped-def]
        if len(calls) == 6:
            raise KeyboardInterrupt("killed")
        calls.append(sample.name)
        return dataset.load(sample)

    folder = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        build_cache(folder, samples, dying, SIZE, {"k": 1}, shard_size=4)
    assert open_cache(folder) is None  # not complete
    calls.clear()

    def counting(sample):  # type: ignore[no-untyped-def]
        calls.append(sample.name)
        return dataset.load(sample)

    info = build_cache(folder, samples, counting, SIZE, {"k": 1}, shard_size=4)
    assert calls == [s.name for s in samples[4:]]  # shard 0 was whole: not decoded again
    ref = stack_split((dataset.load(s) for s in samples), SIZE)
    assert torch.equal(ShardedArray(info, "images")[:], ref.images)
    assert not [p for p in folder.rglob("*") if ".tmp-" in p.name]


def test_keys_differ_with_settings_and_a_broken_shard_says_how_to_fix(dataset,
                                                                      tmp_path: Path) -> None:
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})
    samples = list(dataset.samples())
    info = build_cache(tmp_path / "c", samples, dataset.load, SIZE, {}, shard_size=8)
    images = ShardedArray(info, "images")
    (info.folder / "shards" / "images-00001.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"images-00001.npy.*delete .* to rebuild"):
        images[10]


def test_a_copied_dataset_keeps_its_cache_and_a_changed_one_gets_a_new(tmp_path: Path) -> None:
    import shutil

    from segloop.active.pool import build_pool, cached_split
    from segloop.config import parse_config

    write_camvid(str(tmp_path / "a"), {"train": 5}, hw=(24, 32))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    cfg = parse_config({"active": {"image_size": list(SIZE), "pool_split": "train"}})
    cache = tmp_path / "cache"
    first, _ = cached_split(cfg, str(tmp_path / "a"), "train", None, cache)
    moved, samples = cached_split(cfg, str(tmp_path / "b"), "train", None, cache)
    assert moved.folder == first.folder  # same files elsewhere: the same cache
    rows = read_manifest(first.folder / "manifest.parquet")
    assert all(not r["image_uri"].startswith(str(tmp_path)) for r in rows)  # relative
    pool = build_pool(cfg, str(tmp_path / "b"), cache)
    assert pool.image_uris == tuple(s.image_url for s in samples)  # where they are now
    assert all(u.startswith(str(tmp_path / "b")) for u in pool.image_uris)
    victim = next((tmp_path / "b" / "train").iterdir())
    victim.write_bytes(victim.read_bytes() + b"\0")  # a file changed in place
    changed, _ = cached_split(cfg, str(tmp_path / "b"), "train", None, cache)
    assert changed.folder != first.folder


def test_shards_written_by_mapped_tasks_make_the_same_cache(tmp_path: Path) -> None:
    """The flow writes a split's cache shard by shard (one task each, any order, any
    worker); the finished cache equals one built in one go, and a plan after a partial
    build lists only the missing shards."""
    from segloop.active import pool as pool_mod
    from segloop.config import parse_config

    write_camvid(str(tmp_path / "camvid"), {"train": 11}, hw=(24, 32))
    cfg = parse_config({"data": {"root": str(tmp_path / "camvid")},
                        "active": {"image_size": list(SIZE), "level": "region",
                                   "region": {"n_segments": 12}}})
    root = str(tmp_path / "camvid")
    old = pool_mod.CACHE_SHARD
    pool_mod.CACHE_SHARD = 4
    try:
        plan = pool_mod.plan_split_cache(cfg, root, "train", None, tmp_path / "a", True)
        assert plan.shards == (0, 1, 2)
        assert pool_mod.write_split_shard(cfg, root, plan, 2) == 3
        again = pool_mod.plan_split_cache(cfg, root, "train", None, tmp_path / "a", True)
        assert again.shards == (0, 1)  # shard 2 is written
        for shard in (1, 0, 0):
            pool_mod.write_split_shard(cfg, root, again, shard)
        mapped, _ = pool_mod.cached_split(cfg, root, "train", None, tmp_path / "a", True)
        whole, _ = pool_mod.cached_split(cfg, root, "train", None, tmp_path / "b", True)
    finally:
        pool_mod.CACHE_SHARD = old
    for kind in ("images", "labels", "regions"):
        assert np.array_equal(np.asarray(ShardedArray(mapped, kind)[:]),
                              np.asarray(ShardedArray(whole, kind)[:])), kind
    assert read_manifest(mapped.folder / "manifest.parquet") == read_manifest(
        whole.folder / "manifest.parquet")
    done = pool_mod.plan_split_cache(cfg, root, "train", None, tmp_path / "a", True)
    assert done.shards == ()
