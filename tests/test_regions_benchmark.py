"""The region-quality benchmark's core (benchmarks/regions.py) on two generated images, so
the script cannot rot: every source runs, aligned sources score perfectly, skipped sources
say why, and the results carry no machine paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import regions as bench  # noqa: E402

from segloop.train.models import build_model  # noqa: E402

IGNORE = 11
WORK = (48, 64)  # the 6x8 stride-8 grid: both generated boundaries fall on cell edges


def _scenes() -> list[bench.Scene]:
    """Two 96x128 images of two flat colours (plus mild noise): a vertical split at column
    64 and a horizontal one at row 48; labels 0 / 1 with an ignored top row."""
    rng = np.random.default_rng(0)
    red, blue = np.array([200, 40, 30]), np.array([30, 60, 210])
    scenes = []
    for k, vertical in enumerate((True, False)):
        label = np.zeros((96, 128), np.uint8)
        if vertical:
            label[:, 64:] = 1
        else:
            label[48:, :] = 1
        image = np.where(label[..., None] == 1, blue, red) + rng.integers(-4, 5, (96, 128, 3))
        label[0, :] = IGNORE
        scenes.append(bench.Scene(f"gen{k}.png", image.clip(0, 255).astype(np.uint8), label))
    return scenes


def _row(rows: list[dict[str, Any]], source: str, setting: str, res: str) -> dict[str, Any]:
    found = [r for r in rows if (r["source"], r["setting"], r["resolution"])
             == (source, setting, res)]
    assert len(found) == 1, (source, setting, res, [(r["source"], r["setting"]) for r in rows])
    return found[0]


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    torch.manual_seed(0)
    model = build_model("lraspp", 11)  # random weights: only the plumbing is checked
    return bench.measure(_scenes(), IGNORE, work_hw=WORK, features=bench.lraspp_features(model),
                         slic_segments=(2, 4), taus=(0.3, 0.7))


def test_every_row_is_complete(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        assert set(bench.FIELDS) <= set(r), r
        if r["source"] == "sam-tiny":  # not given: recorded as skipped, with the reason
            assert r["skipped"] == "not run" and r["ue"] is None and not r["meaningful"]
            continue
        assert "skipped" not in r
        assert r["images"] == 2
        assert 0.0 <= r["ue"] <= 1.0 and 0.0 < r["asa"] <= 1.0
        assert 0.0 <= r["br"] <= 1.0 and 0.0 <= r["bp"] <= 1.0
        assert r["regions_per_image"] >= 1 and r["seconds_per_image"] >= 0
    keys = {(r["source"], r["resolution"]) for r in rows}
    for src in ("slic", "cluster/lraspp-low+high", "cluster/lraspp-high", "cluster/rgb",
                "grid"):
        assert {(src, "48x64"), (src, "native")} <= keys


def test_aligned_sources_score_perfectly(rows: list[dict[str, Any]]) -> None:
    for res in ("48x64", "native"):
        for n in (2, 4):  # SLIC follows the colour edge: no region straddles it
            r = _row(rows, "slic", f"n_segments={n}", res)
            assert r["asa"] == 1.0 and r["ue"] == 0.0 and r["br"] == 1.0
        grid = _row(rows, "grid", "6x8 cells", res)  # cell edges on the class edge
        assert grid["asa"] == 1.0 and grid["ue"] == 0.0 and grid["regions_per_image"] == 48
        rgb = _row(rows, "cluster/rgb", "tau=0.9998", res)  # red vs blue: never merged
        assert rgb["asa"] == 1.0 and rgb["ue"] == 0.0
    assert _row(rows, "slic", "n_segments=4", "48x64")["regions_per_image"] >= 2


def test_feature_grids_of_the_lraspp_backbone() -> None:
    feats = bench.lraspp_features(build_model("lraspp", 11))(np.zeros((96, 128, 3), np.uint8))
    assert feats["lraspp-low+high"].shape == (40 + 960, 12, 16)  # stride 8
    assert feats["lraspp-high"].shape == (960, 6, 8)  # stride 16
    norms = np.linalg.norm(feats["lraspp-low+high"], axis=0)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)


def test_missing_sources_are_skipped_with_a_reason(tmp_path: Path) -> None:
    features, why = bench.load_features(tmp_path / "absent.safetensors")
    assert features is None and "not found" in why and str(tmp_path) not in why
    rows = bench.measure(_scenes()[:1], IGNORE, work_hw=WORK, native=False,
                         features_skipped=why, sam_skipped="--no-sam", slic_segments=(4,),
                         taus=(0.5,))
    skipped = [r for r in rows if r.get("skipped")]
    assert {r["source"] for r in skipped} == {"cluster/lraspp-low+high", "cluster/lraspp-high",
                                              "sam-tiny"}
    for r in skipped:
        assert set(bench.FIELDS) <= set(r) and r["ue"] is None and r["images"] == 0
    assert next(r for r in skipped if r["source"] == "sam-tiny")["meaningful"] is False


def test_sam_rows_are_labelled_plumbing_only() -> None:
    rows = bench.measure(_scenes()[:1], IGNORE, work_hw=WORK, native=False,
                         sam=bench.sam_regions_fn(points_per_side=2), slic_segments=(),
                         rgb_taus=())
    sam = [r for r in rows if r["source"] == "sam-tiny"]
    assert len(sam) == 1 and sam[0]["images"] == 1
    assert sam[0]["meaningful"] is False and sam[0]["note"] == bench.NOT_QUALITY


def test_results_files_have_no_machine_paths(rows: list[dict[str, Any]], tmp_path: Path
                                             ) -> None:
    out = tmp_path / "regions.json"
    args = bench.parse_args(["--limit", "2", "--out", str(out)])
    bench.write_results(rows, bench.protocol(args, 2, [(96, 128)]), out)
    text = out.read_text()
    data = json.loads(text)
    assert set(data) == {"protocol", "rows", "reference"} and data["rows"] == rows
    assert data["protocol"]["images"] == 2 and data["protocol"]["limit"] == 2

    def strings(x: Any) -> list[str]:
        if isinstance(x, dict):
            return [s for v in x.values() for s in strings(v)]
        if isinstance(x, list):
            return [s for v in x for s in strings(v)]
        return [x] if isinstance(x, str) else []

    for s in strings(data):
        assert not s.startswith(("/", "~")) and ":\\" not in s, s
    assert str(bench.REPO) not in text and str(tmp_path) not in text
    assert out.with_suffix(".png").stat().st_size > 10_000
