"""The run's report: rounds table, summary line against random selection, curve."""

from __future__ import annotations

from pathlib import Path

from segloop.active.report import markdown_summary, write_reports

ROWS = [
    {"round": 0, "labelled_images": 2, "image_fraction": 0.2, "labelled_pixels": 100,
     "pixel_fraction": 0.01, "clicks": 4, "miou": 0.20},
    {"round": 1, "labelled_images": 4, "image_fraction": 0.4, "labelled_pixels": 200,
     "pixel_fraction": 0.02, "clicks": 8, "miou": 0.31, "random_miou": 0.27},
]


def test_summary_compares_with_random_selection_at_the_same_budget() -> None:
    text = markdown_summary(ROWS, "t", None)
    assert "Random selection at the same budget as round 1: mIoU 0.2700" in text
    assert "this loop: 0.3100 (+0.0400)" in text
    assert "Random selection" not in markdown_summary(ROWS[:1], "t", None)


def test_reports_are_written(tmp_path: Path) -> None:
    paths = write_reports(ROWS, tmp_path, "t")
    assert paths["plot"].stat().st_size > 0
    header = paths["rounds"].read_text().splitlines()[0]
    assert header.startswith("round,labelled_images")
    assert not list(tmp_path.glob(".*tmp*"))
