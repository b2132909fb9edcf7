"""The CamVid active-learning benchmark's own logic: which pool frames neighbour the
evaluation clip, and the summary the README tables come from (no training here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from al_camvid import frame, near_eval  # noqa: E402
from al_camvid_report import markdown_table, summarize  # noqa: E402


def test_frame_numbers_of_camvid_names() -> None:
    assert frame("0016E5_07920.png") == ("0016E5", 7920)
    assert frame("0006R0_f01140.png") == ("0006R0", 1140)


def test_near_eval_is_same_sequence_within_the_window() -> None:
    clip = tuple(f"0016E5_{f:05d}.png" for f in range(7959, 8160, 2))  # val's frames
    names = ["0016E5_07920.png", "0016E5_07650.png", "0016E5_08459.png", "0016E5_08460.png",
             "0006R0_f07959.png", "0016E5_08000.png"]
    # 39 before the clip; 309 before; 300 after; 301 after; other sequence; inside
    assert near_eval(names, clip, window=300) == {0, 2, 5}
    assert near_eval(names, clip, window=30) == {5}


def _point(strategy: str, seed: int, b: float, miou: float, near: int | None) -> dict:
    p = {"level": "image", "strategy": strategy, "seed": seed, "budget_fraction": b,
         "image_fraction": b, "pixel_fraction": b, "miou": miou, "train_seconds": 10.0}
    if near is not None:
        p["images_near_eval"] = near
    return p


def test_summary_means_reference_and_table() -> None:
    data = {"protocol": {"steps": 100},
            "full": [{"seed": 0, "steps": 100, "miou": 0.5}, {"seed": 1, "steps": 100,
                                                               "miou": 0.6},
                     {"seed": 0, "steps": 400, "miou": 0.8}],
            "points": [_point("random", 0, 0.1, 0.7, 1), _point("random", 1, 0.1, 0.8, 2),
                       _point("entropy", 0, 0.1, 0.6, None)]}
    data.update(summarize(data))
    assert data["full_miou"] == pytest.approx(0.55)
    assert data["reference_miou"] == 0.8  # the convergence curve's best beats the mean
    random = next(c for c in data["curves"] if c["strategy"] == "random")
    assert random["miou_mean"] == pytest.approx(0.75)
    assert random["images_near_eval_mean"] == pytest.approx(1.5)
    assert random["relative_to_reference"] == pytest.approx(0.75 / 0.8)
    assert data["to95"] == {"image/random": None, "image/entropy": None}
    table = markdown_table(data)
    assert "| random (n=2) | 0.750 +- 0.071 (94%), 1.5 near val |" in table
    assert "| entropy (n=1) | 0.600 +- 0.000 (75%) |" in table
