from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from segloop.errors import ConfigError, DataError
from segloop.pseudolabel.bags import stream_bags, training_set
from tests.pseudolabel.conftest import write_embeddings, write_manifest

D = 4


def _images(n: int, d: int = D, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        tokens = rng.normal(size=(d, 1024)).astype(np.float32)
        tokens[:, 0] = i  # identifies the image in every row
        masks = np.zeros((d, 6, 6), bool)
        masks[:, : 1 + i % 5] = True
        out[f"img{i:03d}"] = (tokens, masks)
    return out


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[str, Path, dict]:
    images = _images(10)
    out = str(tmp_path / "emb")
    write_embeddings(out, images, shard_size=3)
    labels = {image_id: (["cat"] if i % 2 else ["dog"]) for i, image_id in enumerate(images)}
    labels["img004"] = ["cat", "dog"]  # one image under two labels: multi-hot
    labels["zz-not-embedded"] = ["cat"]
    write_manifest(tmp_path / "synth" / "manifest.parquet", labels, ["dog", "cat"])
    return out, tmp_path / "synth", images


def test_training_set_joins_labels_multi_hot(dataset) -> None:
    out, manifest, images = dataset
    ts = training_set(out, str(manifest))
    assert ts.labels == ("dog", "cat")  # class_index order
    assert ts.images == 10 and ts.missing == 1
    assert ts.targets["img001"].tolist() == [0.0, 1.0]
    assert ts.targets["img002"].tolist() == [1.0, 0.0]
    assert ts.targets["img004"].tolist() == [1.0, 1.0]
    assert len(ts.files) == 4  # 10 images in shards of 3


def test_every_image_once_per_epoch_with_its_bag(dataset) -> None:
    out, manifest, images = dataset
    ts = training_set(out, str(manifest))
    seen: Counter[int] = Counter()
    for bags, targets in stream_bags(ts, 0, seed=1, batch_size=4, shuffle_buffer=3):
        assert bags.shape[1:] == (D, 1024) and bags.dtype == torch.float16
        assert targets.shape == (len(bags), 2)
        for bag, target in zip(bags, targets, strict=True):
            i = int(bag[0, 0])
            assert (bag[:, 0] == i).all()
            image_id = f"img{i:03d}"
            np.testing.assert_array_equal(
                bag.numpy(), images[image_id][0].astype(np.float16))
            assert target.tolist() == ts.targets[image_id].tolist()
            seen[i] += 1
    assert seen == Counter(range(10))


def test_order_is_shuffled_per_epoch_and_reproducible(dataset) -> None:
    out, manifest, _ = dataset
    ts = training_set(out, str(manifest))

    def order(epoch: int, seed: int = 0) -> list[int]:
        return [int(b[0, 0]) for bags, _ in stream_bags(ts, epoch, seed=seed, batch_size=3,
                                                         shuffle_buffer=4) for b in bags]
    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(1)) == list(range(10))


def test_restricting_labels_drops_other_images(dataset) -> None:
    out, manifest, _ = dataset
    with pytest.raises(ConfigError, match="at least 2 labels"):
        training_set(out, str(manifest), ["cat"])
    with pytest.raises(ConfigError, match=r"\['bird'\] are not labels"):
        training_set(out, str(manifest), ["cat", "bird"])


def _with_odd_bag(folder: Path):  # type: ignore[no-untyped-def]
    """A training set whose third image has d + 1 masks."""
    images = _images(2)
    images["odd"] = _images(1, d=D + 1, seed=3)["img000"]
    write_embeddings(str(folder / "emb"), images, shard_size=5)
    write_manifest(folder / "m.parquet", {"img000": ["a"], "img001": ["b"], "odd": ["a"]},
                   ["a", "b"])
    return training_set(str(folder / "emb"), str(folder / "m.parquet"))


def test_differing_point_counts_are_refused(tmp_path: Path) -> None:
    ts = _with_odd_bag(tmp_path)
    with pytest.raises(DataError, match="points_per_side"):
        list(stream_bags(ts, 0, seed=0, batch_size=2, shuffle_buffer=1))


def test_missing_inputs_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run the synthesize flow"):
        training_set(str(tmp_path / "emb"), str(tmp_path / "nothing"))
    write_manifest(tmp_path / "m.parquet", {"a1": ["a"], "b1": ["b"]}, ["a", "b"])
    with pytest.raises(DataError, match="run the embed flow"):
        training_set(str(tmp_path / "emb"), str(tmp_path / "m.parquet"))


def test_prefetching_reader_gives_the_same_batches_and_raises_its_errors(
    dataset, tmp_path: Path
) -> None:
    out, manifest, _ = dataset
    ts = training_set(out, str(manifest))
    plain = list(stream_bags(ts, 3, seed=2, batch_size=3, shuffle_buffer=4, prefetch=0))
    ahead = list(stream_bags(ts, 3, seed=2, batch_size=3, shuffle_buffer=4, prefetch=1))
    assert len(plain) == len(ahead) == 4
    for (a, ta), (b, tb) in zip(plain, ahead, strict=True):
        assert torch.equal(a, b) and torch.equal(ta, tb)
    # stopping early leaves no reader thread behind
    import threading

    first = next(iter(stream_bags(ts, 0, seed=0, batch_size=2, shuffle_buffer=2)))
    assert first[0].shape[0] == 2
    import gc

    gc.collect()
    assert not any(t.name == "segloop-bag-reader" and t.is_alive()
                   for t in threading.enumerate())
    # an error in the reader thread surfaces in the consumer
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(DataError, match="points_per_side"):
        list(stream_bags(_with_odd_bag(bad), 0, seed=0, batch_size=2, shuffle_buffer=1,
                         prefetch=2))
