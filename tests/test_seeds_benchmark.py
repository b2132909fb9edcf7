"""The seed-quality benchmark's core (benchmarks/seeds_camvid.py) on generated data, so the
script cannot rot: hand-checked precision and coverage, thresholds, growing that only adds,
the library's pseudo-label training path, and results without machine paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import seeds_camvid as bench  # noqa: E402

from segloop.active.pool import Pool  # noqa: E402
from segloop.active.seeds import training_labels  # noqa: E402
from segloop.active.state import LabelState  # noqa: E402
from segloop.config import parse_config  # noqa: E402
from segloop.train.arrays import SplitArrays  # noqa: E402

IGN = 11
NAMES = ("a", "b", "c")
RED, PALE, BLUE = (204, 38, 25), (140, 38, 45), (25, 51, 204)


def test_precision_and_coverage_by_hand() -> None:
    gt = np.array([[[0, 0, 1, 1], [1, IGN, 2, 2]]], np.uint8)
    seeds = np.array([[[0, 1, 1, IGN], [1, 0, IGN, IGN]]], np.uint8)
    r = bench.score_seeds(seeds, gt, NAMES, IGN)
    # 7 valid pixels; 4 of them seeded (the seed on the void pixel does not count), 3 right
    assert (r["valid_pixels"], r["seeded_pixels"]) == (7, 4)
    assert r["precision"] == pytest.approx(3 / 4)
    assert r["coverage"] == pytest.approx(4 / 7)
    a, b, c = (r["per_class"][n] for n in NAMES)
    assert (a["precision"], a["coverage"], a["recall"]) == (1.0, 1.0, 0.5)
    assert b["precision"] == pytest.approx(2 / 3)
    assert b["coverage"] == pytest.approx(2 / 3) and b["recall"] == pytest.approx(2 / 3)
    assert c == {"precision": None, "coverage": 0.0, "recall": 0.0, "seeded_pixels": 0,
                 "gt_pixels": 2}


def test_confident_threshold_is_strict() -> None:
    probs = np.array([[[0.9, 0.95, 0.2]], [[0.1, 0.05, 0.8]]], np.float32)  # (2, 1, 3)
    assert bench.confident_seeds(probs, 0.9, IGN).tolist() == [[IGN, 0, IGN]]
    assert bench.confident_seeds(probs, 0.7, IGN).tolist() == [[0, 0, 1]]
    assert bench.confident_seeds(probs, 0.0, IGN).tolist() == [[0, 0, 1]]


class _Backbone(nn.Module):
    """Colour pooled at the LR-ASPP strides: ``low`` 8, ``high`` 16."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"low": F.avg_pool2d(x, 8), "high": F.avg_pool2d(x, 16)}


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = _Backbone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.backbone(x)
        d = 4 * (x[:, 0] - x[:, 2])  # red minus blue
        return torch.stack([d, -d, torch.zeros_like(d)], dim=1)


class _ColourModel(nn.Module):
    """Class 0 for red, 1 for blue, never 2: softmax 0.94 on RED and BLUE, 0.78 on PALE."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _Net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    """One 64x64 image: left half RED (class 0) with a PALE band at columns 8-15 (class 0),
    right half BLUE (class 1) with a RED 8x8 block at rows 32-39, columns 48-55 that is
    class 1 (the model gets it wrong); the top row is void."""
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32], img[:, 8:16], img[:, 32:], img[32:40, 48:56] = RED, PALE, BLUE, RED
    gt = np.zeros((64, 64), np.uint8)
    gt[:, 32:] = 1
    gt[0] = IGN
    return torch.from_numpy(img).permute(2, 0, 1)[None], torch.from_numpy(gt)[None]


def test_seed_variants_on_a_generated_scene() -> None:
    images, labels = _scene()
    variants = bench.default_variants(taus=(0.5,))
    run = bench.make_seeds(_ColourModel(), images, labels, variants, 3, IGN)
    r = {v.key: bench.score(run.tallies[v.key], NAMES) for v in variants}
    valid, band, wrong = 64 * 63, 63 * 8, 64
    # the PALE band (0.78) is below 0.9: confident-0.9 leaves it out, the rest is seeded
    assert r["confident-0.9"]["coverage"] == pytest.approx((valid - band) / valid)
    assert r["confident-0.9"]["precision"] == pytest.approx((valid - band - wrong)
                                                            / (valid - band))
    every = {"coverage": 1.0, "precision": pytest.approx((valid - wrong) / valid)}
    for key in ("argmax", "confident-0.7", "clusters tau=0.5", "clusters-nogrow tau=0.5",
                "confident-0.9+grow tau=0.5"):
        assert {k: r[key][k] for k in every} == every, key
    # growing: the band's region (the red cluster) has mean softmax 0.78 > beta 0.7
    grown = run.seeds["confident-0.9+grow tau=0.5"]
    sparse = run.seeds["confident-0.9"]
    kept = sparse != IGN
    assert (grown[kept] == sparse[kept]).all() and (grown[:, :, 8:16] == 0).all()
    # the thesis rule: PALE's normalised class-0 score (~0.83) is above alpha 0.5 already
    nogrow = run.seeds["clusters-nogrow tau=0.5"]
    assert (run.seeds["clusters tau=0.5"] == nogrow).all() and (nogrow[:, :, 8:16] == 0).all()
    regions = run.tallies["clusters tau=0.5"].regions
    assert len(regions) == 1 and 2 <= regions[0] <= 64
    assert all(s > 0 for t in run.tallies.values() for s in t.seconds)


def test_growing_never_removes_seeds_on_random_probs() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 24, 32)) * 3
    probs = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)
    regions = np.repeat(np.repeat(rng.integers(0, 6, (3, 4)), 8, 0), 8, 1)
    for present in (np.ones(3, bool), np.array([True, False, True])):
        nogrow = bench.cluster_seeds(probs, regions, present, 0.5, None, IGN)
        grown = bench.cluster_seeds(probs, regions, present, 0.5, 0.4, IGN)
        assert (grown[nogrow != IGN] == nogrow[nogrow != IGN]).all()
        assert (grown != IGN).sum() >= (nogrow != IGN).sum()


def _pool(n: int = 3, hw: tuple[int, int] = (64, 64)) -> Pool:
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.integers(0, 256, (n, 3, *hw), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 3, (n, *hw), dtype=np.uint8))
    arrays = SplitArrays(images, labels, tuple(f"id{i}" for i in range(n)),
                         tuple(f"im{i}.png" for i in range(n)), ((*hw,),) * n)
    return Pool(arrays, (), None, None)


def test_seeds_train_through_the_library_path(tmp_path: Path) -> None:
    pool = _pool()
    state = LabelState.empty(pool, IGN)
    assert pool.arrays.labels is not None
    human = pool.arrays.labels[0].numpy()
    state.apply(pool, 0, [-1], human)
    seeds = np.stack([np.full((64, 64), 1, np.uint8), np.full((64, 64), IGN, np.uint8)])
    seeds[1, :8] = 2
    full = bench.seed_labels(pool, [1, 2], seeds, IGN)
    s = bench.as_seeds(full, "confident-0.9", IGN)
    assert (s.images, s.pixels) == (2, 64 * 64 + 8 * 64)
    merged = training_labels(state.labels, state.queried, s)
    assert (merged[0] == human).all() and (merged[1] == 1).all() and (merged[2] == full[2]).all()
    assert state.labelled_images == 1  # seeds never count as labelled
    cfg = parse_config({"train": {"model": "lraspp", "steps": 2, "batch_size": 2},
                        "active": {"level": "image", "image_size": [64, 64]}})
    m1, _, cached1 = bench.train_on_seeds(pool, state, s, cfg, 2, tmp_path, "confident-0.9")
    m2, _, cached2 = bench.train_on_seeds(pool, state, s, cfg, 2, tmp_path, "confident-0.9")
    assert (cached1, cached2) == (False, True)
    assert len(list(tmp_path.glob("confident-0.9-*.safetensors"))) == 1
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    _, _, cached3 = bench.train_on_seeds(pool, state, None, cfg, 2, tmp_path, "none")
    assert not cached3  # other labels, other digest


def test_results_name_no_machine_path(tmp_path: Path) -> None:
    images, labels = _scene()
    variants = bench.default_variants(taus=(0.5, 0.7))
    runs = {0: bench.make_seeds(_ColourModel(), images, labels, variants, 3, IGN)}
    args = bench.parse_args(["--limit", "1", "--skip-training", "--out", str(tmp_path / "x")])
    rows = bench.seed_rows(variants, runs, NAMES)
    data = {"protocol": bench.protocol(args, {"budgets": [0.02, 0.05, 0.1, 0.2],
                                              "seed_models": ["benchmarks/.cache/x"]}),
            "seeds": rows,
            "training": bench.training_rows({"none": [{"seed": 0, "miou": 0.25}],
                                             "clusters": [{"seed": 0, "miou": 0.3}]}),
            "notes": bench.notes(args, rows)}
    out = tmp_path / "r" / "seeds.json"
    bench.write_results(data, out)
    text = out.read_text()
    assert str(tmp_path) not in text and "/work" not in text
    assert bench.machine_paths(json.loads(text)) == []
    assert out.with_suffix(".png").stat().st_size > 10_000
    got = json.loads(text)
    assert {r["variant"] for r in got["seeds"]} == {
        "argmax", "confident-0.9", "confident-0.7", "clusters", "clusters-nogrow",
        "clusters-tags", "confident-0.9+grow"}
    assert [r["regions_per_image"] is None for r in got["seeds"][:3]] == [True] * 3
    assert got["training"][1] == {"seeds": "clusters", "miou": 0.3, "miou_std": None,
                                  "per_seed": [{"seed": 0, "miou": 0.3}]}
    with pytest.raises(ValueError, match="machine paths"):
        bench.write_results({**data, "notes": [str(tmp_path)]}, tmp_path / "bad.json")
