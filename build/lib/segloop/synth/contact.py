"""A contact sheet: a few samples per class in one PNG, for people to glance at."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
from PIL import Image, ImageDraw

from segloop.data.fs import join
from segloop.data.images import read_image, write_bytes_atomic

LABEL_WIDTH = 120


def contact_sheet(out: str, manifest: pa.Table, labels: list[str], per_class: int,
                  path: str | Path, cell: int = 96) -> Path | None:
    """Write a grid (one row per label, ``per_class`` images each) to ``path``.

    Images are the first ones of each label in index order, resized to ``cell`` pixels
    square; a label with no accepted image gets an empty row. Returns None when there is
    nothing to show (``per_class`` 0 or no images at all).
    """
    if per_class <= 0 or manifest.num_rows == 0 or not labels:
        return None
    rows = sorted(manifest.select(["label", "index", "image_uri"]).to_pylist(),
                  key=lambda r: r["index"])
    sheet = Image.new("RGB", (LABEL_WIDTH + per_class * cell, len(labels) * cell), "white")
    draw = ImageDraw.Draw(sheet)
    for r, label in enumerate(labels):
        draw.text((6, r * cell + cell // 2 - 6), label[:18], fill="black")
        picks = [row for row in rows if row["label"] == label][:per_class]
        for c, row in enumerate(picks):
            image = Image.fromarray(read_image(join(out, row["image_uri"])))
            sheet.paste(image.resize((cell, cell)), (LABEL_WIDTH + c * cell, r * cell))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    write_bytes_atomic(str(target), buf.getvalue())
    return target
