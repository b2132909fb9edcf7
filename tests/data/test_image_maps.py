"""Per-image maps stored only where touched: array behaviour, memory with the labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segloop.data.image_maps import ImageMaps, class_counts, labelled_counts, rows_of
from segloop.train.loop import TrainSettings, train_model
from segloop.train.models import build_model

IGNORE = 11


def _dense(n: int = 6, hw: tuple[int, int] = (4, 5)) -> np.ndarray:
    rng = np.random.default_rng(0)
    dense = np.full((n, *hw), IGNORE, np.uint8)
    dense[1] = rng.integers(0, 3, hw)
    dense[4, :2] = 2
    return dense


def test_reads_like_the_dense_array_and_stores_only_touched_rows() -> None:
    dense = _dense()
    maps = ImageMaps.from_dense(dense, IGNORE)
    assert maps.shape == dense.shape and len(maps) == 6
    assert maps.indices().tolist() == [1, 4]
    for key in (0, 1, -2, slice(1, 5), [4, 0, 4], np.array([True, False] * 3),
                torch.tensor([5, 1])):
        want = dense[key.numpy() if isinstance(key, torch.Tensor) else key]
        assert np.array_equal(maps[key], want), key
    assert np.array_equal(rows_of(maps, torch.tensor([1, 4])).numpy(), dense[[1, 4]])
    assert np.array_equal(labelled_counts(maps, IGNORE).numpy(),
                          (dense != IGNORE).reshape(6, -1).sum(1))
    assert np.array_equal(class_counts(maps, 11, IGNORE), class_counts(dense, 11, IGNORE))
    with pytest.raises(IndexError):
        maps[6]


def test_rows_are_written_in_place_and_copies_are_independent() -> None:
    maps = ImageMaps(3, (2, 2), bool, False)
    assert maps.indices().size == 0 and not maps[2].any()
    maps.row(2)[0, 0] = True
    maps[0] = np.ones((2, 2), bool)
    assert maps.count_per_image().tolist() == [4, 0, 1]
    other = maps.copy()
    other.row(2)[...] = False
    assert maps.count_per_image().tolist() == [4, 0, 1]
    assert other.count_per_image().tolist() == [4, 0, 0]


def test_training_on_maps_equals_training_on_the_dense_tensor() -> None:
    """Same pixels, same seed, same batches: the losses agree exactly (one process)."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    dense = np.full((6, 16, 16), IGNORE, np.uint8)
    dense[1], dense[3, :8] = 2, 1
    settings = TrainSettings(steps=6, batch_size=2, seed=3)
    losses = []
    for labels in (torch.from_numpy(dense), ImageMaps.from_dense(dense, IGNORE)):
        torch.manual_seed(1)
        model = build_model("unet", 4, width=4, depth=2)
        losses.append(train_model(model, images, labels, settings, IGNORE,
                                  torch.device("cpu"), progress=False))
    assert losses[0] == losses[1]
