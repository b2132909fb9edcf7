"""The synthesize flow's outputs for people and DVC: summary JSON and markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segloop.data.json_io import write_json


def write_summary(summary: dict[str, Any], reports_dir: str | Path) -> Path:
    """Write ``<reports>/synthesize/summary.json`` (the DVC stage's metrics) atomically."""
    return write_json(Path(reports_dir) / "synthesize" / "summary.json", summary)


def markdown(summary: dict[str, Any], sheet: Path | None, commit: str | None) -> str:
    """Per-class counts, throughput, where the dataset and contact sheet are."""
    lines = ["# segloop synthesize run", "",
             f"Dataset `{summary['output']}`: {summary['images']} images kept, "
             f"{summary['rejected']} rejected by the CLIP filter; this run generated "
             f"{summary['generated']} ({summary['skipped']} were already there) at "
             f"{summary['images_per_second']:.3f} images/s.", "",
             "| label | names | images | rejected |", "|---|---|---:|---:|"]
    lines += [f"| {c['label']} | {c['names']} | {c['images']} | {c['rejected']} |"
              for c in summary["per_class"]]
    if sheet is not None:
        lines += ["", f"Contact sheet: `{sheet}`"]
    if commit:
        lines += ["", f"Versioned at `{commit[:10]}`."]
    return "\n".join(lines) + "\n"
