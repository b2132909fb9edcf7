"""Side-by-side figures of images, pseudo-labels and ground truth for the reports.

Layout of :func:`side_by_side`: one row per image, three columns "image | pseudo-label |
ground truth", every row scaled to ``row_height`` pixels (aspect kept; labels with nearest
neighbour), each column ``max scaled width`` wide, no gaps; then a legend strip of
``LEGEND_PAD + lines * LEGEND_LINE + LEGEND_PAD`` pixels (one line when the entries fit the
width). Column titles are drawn on the first row, captions at the bottom-left of each image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segloop.data.images import write_bytes_atomic
from segloop.pseudolabel.paint import ABSTAIN

Color = tuple[int, int, int]
MISSING_COLOR: Color = (128, 128, 128)
"""Colour of ids that have no colour (not a class, not abstain, not ignore)."""
BLANK_COLOR: Color = (230, 230, 230)
LEGEND_LINE = 18
LEGEND_PAD = 4
_SWATCH = 12
_COLUMNS = ("image", "pseudo-label", "ground truth")


def _check_label(label: np.ndarray, what: str) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"{what} must be an (H, W) integer label map, got {label.dtype} "
                         f"{label.shape}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"{what} holds ids outside 0..255; label maps are uint8")
    return label


def colorize(label: np.ndarray, colors: Sequence[Color], abstain_color: Color = (0, 0, 0),
             ignore_index: int | None = None, ignore_color: Color = (255, 255, 255), *,
             abstain: int = ABSTAIN) -> np.ndarray:
    """(H, W) integer label map -> (H, W, 3) uint8 RGB.

    ``colors[i]`` is the colour of id i; ``abstain`` gets ``abstain_color``; ``ignore_index``
    (if given) gets ``ignore_color`` (it wins if it equals ``abstain``); other ids are grey.
    """
    label = _check_label(label, "label")
    if len(colors) > 256:
        raise ValueError(f"{len(colors)} colours given; label maps hold at most 256 ids")
    lut = np.empty((256, 3), np.uint8)
    lut[:] = MISSING_COLOR
    if len(colors):
        lut[: len(colors)] = np.asarray(colors, np.int64).reshape(len(colors), 3).clip(0, 255)
    if 0 <= abstain <= 255:
        lut[abstain] = abstain_color
    if ignore_index is not None and 0 <= ignore_index <= 255:
        lut[ignore_index] = ignore_color
    return lut[label.astype(np.int64)]


def _text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str,
          font: ImageFont.ImageFont | ImageFont.FreeTypeFont, *, anchor_bottom: bool = False,
          ) -> None:
    """White text on a black box at ``xy`` (top-left, or bottom-left if ``anchor_bottom``)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = xy
    if anchor_bottom:
        y -= bottom + 4
    draw.rectangle((x, y, x + right + 4, y + bottom + 3), fill=(0, 0, 0))
    draw.text((x + 2, y + 1), text, fill=(255, 255, 255), font=font)


def _image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 3 and image.shape[2] == 3
                                       or image.ndim == 2):
        raise ValueError(f"images must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def _legend(entries: list[tuple[str, Color]], width: int,
            font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> Image.Image:
    """The legend strip: swatch + name per entry, wrapped to ``width``."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    placed: list[tuple[int, int, str, Color]] = []
    x, line = LEGEND_PAD, 0
    for name, color in entries:
        w = _SWATCH + 4 + int(probe.textbbox((0, 0), name, font=font)[2]) + 12
        if x > LEGEND_PAD and x + w > width:
            x, line = LEGEND_PAD, line + 1
        placed.append((x, line, name, color))
        x += w
    strip = Image.new("RGB", (width, 2 * LEGEND_PAD + (line + 1) * LEGEND_LINE), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for x, ln, name, color in placed:
        y = LEGEND_PAD + ln * LEGEND_LINE + (LEGEND_LINE - _SWATCH) // 2
        draw.rectangle((x, y, x + _SWATCH - 1, y + _SWATCH - 1), fill=tuple(color),
                       outline=(0, 0, 0))
        draw.text((x + _SWATCH + 4, y), name, fill=(0, 0, 0), font=font)
    return strip


def side_by_side(rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None, str]],
                 colors: Sequence[Color], path: str, *, abstain: int = ABSTAIN,
                 ignore_index: int | None = None, row_height: int = 160,
                 class_names: Sequence[str] | None = None) -> str:
    """Write a PNG "image | pseudo-label | ground truth" figure atomically; return ``path``.

    Args:
        rows: (image (H, W, 3) uint8, pseudo-label (H, W) int, ground truth (H, W) int or
            None -> a blank panel titled "no ground truth", caption).
        colors: RGB per class id.
        path: where to write (local path or fsspec URL).
        abstain: pseudo-label value drawn black; ignore_index: ground-truth value drawn white.
        row_height: height of every row in pixels.
        class_names: legend names (default "class i").
    """
    if not rows:
        raise ValueError("side_by_side needs at least one row (image, pseudo-label, gt, caption)")
    if row_height < 1:
        raise ValueError(f"row_height must be >= 1, got {row_height}")
    panels: list[tuple[Image.Image, Image.Image, Image.Image | None, str]] = []
    for r, row in enumerate(rows):
        if len(row) != 4:
            raise ValueError(f"row {r} has {len(row)} items; give (image, pseudo-label, "
                             "ground truth or None, caption)")
        image, pred, gt, caption = row
        image = _image(image)
        pred = _check_label(pred, f"row {r} pseudo-label")
        if pred.shape != image.shape[:2]:
            raise ValueError(f"row {r}: pseudo-label {pred.shape} and image "
                             f"{image.shape[:2]} differ in size")
        if gt is not None:
            gt = _check_label(gt, f"row {r} ground truth")
            if gt.shape != pred.shape:
                raise ValueError(f"row {r}: ground truth {gt.shape} and pseudo-label "
                                 f"{pred.shape} differ in size")
        h, w = pred.shape
        if h == 0 or w == 0:
            raise ValueError(f"row {r}: the image is empty ({h} x {w})")
        size = (max(1, round(w * row_height / h)), row_height)
        near = Image.Resampling.NEAREST
        panels.append((
            Image.fromarray(image).resize(size, Image.Resampling.BILINEAR),
            Image.fromarray(colorize(pred, colors, abstain=abstain)).resize(size, near),
            None if gt is None else Image.fromarray(
                colorize(gt, colors, ignore_index=ignore_index, abstain=abstain)
            ).resize(size, near),
            str(caption),
        ))
    font = ImageFont.load_default()
    col_w = max(p[0].width for p in panels)
    names = list(class_names) if class_names is not None else [
        f"class {i}" for i in range(len(colors))]
    if len(names) != len(colors):
        raise ValueError(f"{len(names)} class names for {len(colors)} colours")
    entries = [(n, tuple(c)) for n, c in zip(names, colors, strict=True)]
    entries.append(("abstain", (0, 0, 0)))
    if ignore_index is not None:
        entries.append(("ignore", (255, 255, 255)))
    legend = _legend(entries, 3 * col_w, font)
    fig = Image.new("RGB", (3 * col_w, len(panels) * row_height + legend.height),
                    (255, 255, 255))
    draw = ImageDraw.Draw(fig)
    for r, (img, pred_img, gt_img, caption) in enumerate(panels):
        y = r * row_height
        fig.paste(img, (0, y))
        fig.paste(pred_img, (col_w, y))
        if gt_img is None:
            draw.rectangle((2 * col_w, y, 2 * col_w + img.width - 1, y + row_height - 1),
                           fill=BLANK_COLOR)
            _text(draw, (2 * col_w, y + (row_height - 14) // 2), "no ground truth", font)
        else:
            fig.paste(gt_img, (2 * col_w, y))
        if r == 0:
            for c, title in enumerate(_COLUMNS):
                if not (c == 2 and gt_img is None):
                    _text(draw, (c * col_w, 0), title, font)
        if caption:
            _text(draw, (0, y + row_height), caption, font, anchor_bottom=True)
    fig.paste(legend, (0, len(panels) * row_height))
    buf = io.BytesIO()
    fig.save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())
    return path
