"""The embed flow's outputs for people and DVC: a metrics JSON and a markdown summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segloop.data.json_io import write_json


def write_summary(summary: dict[str, Any], reports_dir: str | Path) -> Path:
    """Write ``<reports>/embed/summary.json`` (the DVC stage's metrics) atomically."""
    return write_json(Path(reports_dir) / "embed" / "summary.json", summary)


def markdown(summary: dict[str, Any], commit: str | None) -> str:
    """A short human summary: counts, bytes, throughput and where the output lives."""
    mib = summary["bytes_written"] / 2**20
    lines = [
        "# segloop embed run",
        "",
        "| | |",
        "|---|---|",
        f"| output | `{summary['output']}` (source `{summary['source']}`) |",
        f"| images in dataset | {summary['images_in_dataset']} |",
        f"| skipped (already embedded) | {summary['images_skipped']} |",
        f"| embedded now | {summary['images_embedded']} in {summary['shards_written']} "
        "shard(s) |",
        f"| masks written | {summary['masks_written']} |",
        f"| bytes written | {mib:.1f} MiB |",
        f"| throughput | {summary['images_per_second']:.3f} images/s "
        f"({summary['seconds']:.1f} s) |",
        f"| masks in output | {summary['total_masks_in_output']} |",
    ]
    if commit:
        lines.append(f"| versioned at | `{commit[:10]}` |")
    return "\n".join(lines) + "\n"
