"""The streamed-pool scale benchmark (benchmarks/scale.py) in its --quick mode, so the
script cannot rot: it generates its pool, measures each size in a child process, and writes
a JSON whose figures are present, positive and consistent, with no machine paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "scale.py"
sys.path.insert(0, str(SCRIPT.parent))

import scale as bench  # noqa: E402

from segloop.testing import all_strings  # noqa: E402

PER_SIZE = ("images", "cache_bytes", "cache_seconds", "peak_rss_mb", "round_peak_rss_mb",
            "rss_after_cache_mb", "scoring_seconds", "scoring_per_1k_s", "select_seconds",
            "train_seconds", "initial_seconds")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("scale")
    out = tmp / "results" / "scale.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--only", "streamed",
                           "--out", str(out), "--cache", str(tmp / "cache")],
                          capture_output=True, text=True, cwd=tmp, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), out


def test_quick_json_has_every_figure(quick: tuple[dict[str, Any], Path]) -> None:
    data, out = quick
    assert data["sizes"] == [50, 200]
    assert set(data["per_size"]) == {"50", "200"}
    assert data["settings"]["quick"] is True and data["settings"]["steps"] == 5
    assert "dask" not in data  # that section is another part's
    for n in data["sizes"]:
        row = data["per_size"][str(n)]
        assert row["images"] == n
        for key in PER_SIZE:
            assert isinstance(row[key], int | float) and row[key] > 0, (n, key, row[key])
        assert row["peak_rss_mb"] >= max(row["round_peak_rss_mb"], row["cache_peak_rss_mb"])
        assert row["scoring_per_1k_s"] == pytest.approx(row["scoring_seconds"] * 1000 / n,
                                                        rel=1e-3, abs=1e-3)
        assert row["labelled_images"] == max(1, round(0.02 * n))  # round 0: 2% of the images
        assert row["picked"] == max(1, round(0.02 * n))  # the round buys 2% more
        assert row["candidates"] == n - row["labelled_images"]
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_summary_is_computed_from_the_sizes(quick: tuple[dict[str, Any], Path]) -> None:
    data, _ = quick
    rows = [data["per_size"][str(n)] for n in data["sizes"]]
    per_1k = [r["scoring_per_1k_s"] for r in rows]
    spread = (max(per_1k) - min(per_1k)) / min(per_1k)
    assert data["scoring_per_1k_spread"] == pytest.approx(spread, rel=1e-3, abs=1e-3)
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    assert data["rss_ratio_200_vs_50"] == pytest.approx(ratio, rel=1e-3)
    t = data["targets"]
    assert t["rss_ratio"]["key"] == "rss_ratio_200_vs_50" and t["rss_ratio"]["max"] == 1.2
    assert t["rss_ratio"]["met"] == (t["rss_ratio"]["value"] <= 1.2)
    assert t["scoring_per_1k_spread"]["max"] == 0.15
    assert t["scoring_per_1k_spread"]["met"] == (t["scoring_per_1k_spread"]["value"] <= 0.15)


def test_results_have_no_machine_paths(quick: tuple[dict[str, Any], Path]) -> None:
    data, out = quick
    text = out.read_text()
    assert str(out.parent.parent) not in text and str(REPO) not in text
    for s in all_strings(data):
        assert not s.startswith(("/", "~")) and ":\\" not in s, s


def test_generated_pool_is_deterministic_and_camvid_like(tmp_path: Path) -> None:
    from segloop.data.classes import CAMVID
    from segloop.data.datasets import open_dataset

    image, label = bench.scene(0, 7)
    again, label2 = bench.scene(0, 7)
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(label, label2)
    assert not np.array_equal(image, bench.scene(0, 8)[0])
    assert label.max() <= 11 and len(np.unique(label)) >= 3
    root = bench.generate(tmp_path, 3, seed=0)
    assert bench.generate(tmp_path, 3, seed=0) == root  # written once
    ds = open_dataset("camvid", str(root), "train", CAMVID)
    loaded = [ds.load(s) for s in ds.samples()]
    assert len(loaded) == 3
    np.testing.assert_array_equal(loaded[0].image, bench.scene(0, 0)[0])
    np.testing.assert_array_equal(loaded[2].label, bench.scene(0, 2)[1])


def test_summary_names_the_sizes_run() -> None:
    row = {"peak_rss_mb": 100.0, "round_peak_rss_mb": 90.0, "scoring_per_1k_s": 2.0,
           "scoring_per_1k_after_first_batch_s": 1.5}
    big = {**row, "peak_rss_mb": 130.0, "scoring_per_1k_s": 2.5}
    s = bench.summarize({"1000": row, "50000": big})
    assert s["rss_ratio_50k_vs_1k"] == pytest.approx(1.3)
    assert s["scoring_per_1k_spread"] == pytest.approx(0.25)
    assert s["targets"]["rss_ratio"]["met"] is False
    assert s["targets"]["scoring_per_1k_spread"]["met"] is False


@pytest.mark.slow
def test_dask_part_identical_outputs_and_overhead(tmp_path: Path) -> None:
    """Part 2 (--only dask, --quick): threads, 1 and 2 local Dask workers through the real
    flows give identical rounds, shard scans and SAM tokens; overhead figures recorded."""
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--only", "dask", "--out",
                           str(out), "--cache", str(tmp_path / "cache")], capture_output=True,
                          text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dask = json.loads(out.read_text())["dask"]
    assert dask["identical"] == {"al_rounds_and_scans": True, "al_miou": True,
                                 "embed_tokens": True}
    assert dask["al_shards_checked"] == 4 and set(dask["runners"]) == {"threads", "dask-1",
                                                                          "dask-2"}
    for fig in dask["runners"].values():
        assert fig["ms_per_task_one_at_a_time"] > 0 and fig["ms_per_task_in_a_batch"] > 0
        assert fig["start_s"] >= 0 and fig["al_round_s"] > 0 and fig["embed_s"] > 0
