"""Training reads its batches through a DataLoader: the same losses for any number of
workers (in memory, from a pool cache, with semi-supervision, across label refreshes), no
worker left behind, and the config field that sets the worker count."""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from segloop.active.pool_cache import ShardedArray, build_cache
from segloop.config import TrainConfig, parse_config
from segloop.data.classes import CAMVID
from segloop.data.datasets import open_dataset
from segloop.data.image_maps import ImageMaps
from segloop.errors import ConfigError, ModelOutputError
from segloop.testing import write_camvid
from segloop.train.batches import StepSampler, pick_generator
from segloop.train.factory import train_settings
from segloop.train.loop import LabelRefresh, Labels, TrainSettings, train_model
from segloop.train.models import build_model
from segloop.train.semi import SemiSettings

IGNORE = 11
CPU = torch.device("cpu")
SEMI = SemiSettings(batch_size=2, start_fraction=0.25, ramp_fraction=0.25, threshold=0.0)


def _data() -> tuple[torch.Tensor, ImageMaps]:
    """6 images (6, 3, 16, 16) uint8; labels on images 0 and 1 only (ImageMaps)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=g)
    dense = np.full((6, 16, 16), IGNORE, np.uint8)
    dense[:2] = (images[:2, 0] > 127).numpy()
    dense[1, :, 8:] = IGNORE  # part of an image labelled (a region round)
    return images, ImageMaps.from_dense(dense, IGNORE)


def _train(images: object, labels: Labels, workers: int, steps: int = 6,
           semi: SemiSettings | None = SEMI, refresh: LabelRefresh | None = None,
           refresh_at: tuple[float, ...] = (), classes: int = 2) -> list[float]:
    torch.manual_seed(0)
    model = build_model("unet", classes, width=4, depth=1, dropout=0.1)
    settings = TrainSettings(steps=steps, batch_size=2, seed=3, num_workers=workers)
    losses = train_model(model, images, labels, settings, IGNORE, CPU,  # type: ignore[arg-type]
                         progress=False, semi=semi, refresh=refresh, refresh_at=refresh_at)
    assert multiprocessing.active_children() == []  # no worker outlives training
    return losses


def test_losses_are_the_same_for_0_1_and_2_workers_with_semi() -> None:
    images, labels = _data()
    runs = [_train(images, labels, workers) for workers in (0, 1, 2)]
    assert runs[0] == runs[1] == runs[2]  # bit for bit
    assert len(runs[0]) == 6 and all(v > 0 for v in runs[0])
    assert runs[0] != _train(images, labels, 0, semi=None)  # semi did change training


def test_picks_come_from_their_own_generator() -> None:
    """A step's picks depend on the seed and the steps before it only: drawing all steps
    at once or in two stretches gives the same picks (what prefetching cannot change)."""
    weights = torch.tensor([1.0, 0.0, 3.0, 1.0])
    pool = torch.arange(4)

    def picks(stretches: list[tuple[int, int]]) -> list[tuple[int, list[int], object]]:
        gen = pick_generator(5)
        out = []
        for a, b in stretches:
            for p in StepSampler(a, b, 8, weights, 3, gen, SEMI, pool):
                out.append((p.step, p.pick.tolist(),
                            None if p.upick is None else p.upick.tolist()))
        return out

    whole = picks([(0, 8)])
    assert whole == picks([(0, 3), (3, 8)])
    assert [s for s, _, _ in whole] == list(range(8))
    assert all(1 not in pick for _, pick, _ in whole)  # weight 0: never drawn
    assert [u is None for _, _, u in whole] == [True, True] + [False] * 6  # semi from step 2


def test_a_pool_cache_trains_like_memory_for_any_worker_count(tmp_path: Path) -> None:
    write_camvid(str(tmp_path / "camvid"), {"train": 7}, hw=(16, 16))
    ds = open_dataset("camvid", str(tmp_path / "camvid"), "train", CAMVID)
    info = build_cache(tmp_path / "cache", list(ds.samples()), ds.load, (16, 16), {"k": 1},
                       shard_size=3)
    images = ShardedArray(info, "images")
    again = pickle.loads(pickle.dumps(images))  # what a spawned worker would get
    assert torch.equal(again[torch.tensor([6, 0, 3])], images[torch.tensor([6, 0, 3])])
    truth = ShardedArray(info, "labels", as_tensor=False)
    dense = np.full((7, 16, 16), IGNORE, np.uint8)
    dense[[1, 4, 6]] = truth[[1, 4, 6]]  # three labelled images, in different shards
    labels = ImageMaps.from_dense(dense, IGNORE)
    in_memory = _train(images[:], labels, 0, classes=IGNORE)
    assert _train(images, labels, 0, classes=IGNORE) == in_memory
    assert _train(images, labels, 2, classes=IGNORE) == in_memory


def test_refresh_applies_new_labels_in_the_workers_too() -> None:
    """The refresh at step 3 labels images 2..5 and unlabels 0 and 1: from then on every
    batch comes from the new labels (a worker still holding the old ones would read
    nothing but ignore and give a zero loss)."""
    images, labels = _data()
    grown = np.full((6, 16, 16), IGNORE, np.uint8)
    grown[2:] = (images[2:, 1] > 127).numpy()
    calls: list[int] = []

    def refresh(model: torch.nn.Module) -> Labels:
        calls.append(1)
        assert not model.training
        return ImageMaps.from_dense(grown, IGNORE)

    plain = _train(images, labels, 0, steps=6, semi=None)
    runs = [_train(images, labels, w, steps=6, semi=None, refresh=refresh, refresh_at=(0.5,))
            for w in (0, 2)]
    assert calls == [1, 1]
    assert runs[0] == runs[1]
    assert runs[0][:3] == plain[:3]  # the same until the refresh ...
    assert all(a != b for a, b in zip(runs[0][3:], plain[3:], strict=True))  # ... then not
    assert all(v > 0 for v in runs[1][3:])


class FromCall3(torch.nn.Module):
    """A small U-Net whose forward calls from the third on go through ``then``."""

    def __init__(self, then: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.inner, self.calls, self.then = build_model("unet", 2, width=4, depth=1), 0, then

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.inner(x)
        return self.then(out) if self.calls >= 3 else out


def test_a_failing_step_leaves_no_worker() -> None:
    images, labels = _data()

    def boom(out: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train_model(FromCall3(boom), images, labels, TrainSettings(steps=20, batch_size=2,
                                                                   num_workers=2), IGNORE, CPU,
                    progress=False)
    assert multiprocessing.active_children() == []


def test_a_diverging_run_stops_at_its_first_non_finite_loss() -> None:
    images, labels = _data()
    overflows = FromCall3(lambda out: out * float("inf"))  # from step 3 on
    with pytest.raises(ModelOutputError, match=r"round 1: the loss is nan at step 3 of 20 "
                       r"\(learning rate .*\): training diverged\. Lower train\.lr"):
        train_model(overflows, images, labels, TrainSettings(steps=20, batch_size=2), IGNORE,
                    CPU, progress=False, desc="round 1", semi=None)


def test_loader_workers_config_field() -> None:
    assert TrainConfig().loader_workers == 0
    cfg = parse_config({"train": {"loader_workers": 2}})
    assert train_settings(cfg.train, 0, None).num_workers == 2
    with pytest.raises(ConfigError, match=r"train\.loader_workers: .*greater than or equal"):
        parse_config({"train": {"loader_workers": -1}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"train\.loader_workers"):
        parse_config({"train": {"loader_workers": "many"}}, "x.yaml")
    images, labels = _data()
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        train_model(build_model("unet", 2, width=4, depth=1), images, labels,
                    TrainSettings(steps=1, num_workers=-1), IGNORE, CPU, progress=False)
