"""A PNG per active-learning round showing what was picked and why: a grid of the picked
images (highest acquisition score first), each with its picked regions outlined (region
level) or a coloured frame (image level), captioned with the pool index and image id, the
score, the image's cluster (when the round clustered) and the regions' predicted classes.

Figures are drawn with :class:`matplotlib.figure.Figure` (no pyplot state: safe in threads)
and written atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import binary_dilation

from segloop.active.selection import Selection, Unit
from segloop.data.images import write_bytes_atomic

if TYPE_CHECKING:
    from segloop.active.loop import ALContext

OUTLINE = (255, 0, 255)  # magenta: rare in street scenes and natural images
TILE_INCHES = 2.6  # width of one tile
CAPTION_INCHES = 0.55  # below each tile
TITLE_INCHES = 0.45
MAX_COLS = 4
DPI = 110


def outline(image: np.ndarray, region_map: np.ndarray, region_ids: Iterable[int],
            colour: tuple[int, int, int] = OUTLINE, thickness: int = 1) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 where the inner boundary of each region in
    ``region_ids`` of ``region_map`` (H, W) int is ``colour``, ``thickness`` pixels wide.

    A boundary pixel belongs to a picked region and has a 4-neighbour in another region or
    outside the image; pixels of other regions are never changed. A whole image is region 0
    of an all-zero map (a frame)."""
    if region_map.shape != image.shape[:2]:
        raise ValueError(f"region map {region_map.shape} does not match image {image.shape}")
    picked = np.isin(region_map, np.fromiter(region_ids, dtype=np.int64))
    p = np.pad(region_map.astype(np.int64), 1, constant_values=-1)
    mid = p[1:-1, 1:-1]
    edge = picked & ((mid != p[:-2, 1:-1]) | (mid != p[2:, 1:-1])
                     | (mid != p[1:-1, :-2]) | (mid != p[1:-1, 2:]))
    if thickness > 1:
        edge = binary_dilation(edge, iterations=thickness - 1) & picked
    out = image.copy()
    out[edge] = colour
    return out


def tile_order(units: Sequence[Unit], max_tiles: int) -> list[int]:
    """Image indices of the picked units, best score first (ties: lower index), at most
    ``max_tiles``."""
    best: dict[int, float] = {}
    for u in units:
        best[u.image_index] = max(best.get(u.image_index, -math.inf), u.score)
    return sorted(best, key=lambda i: (-best[i], i))[:max_tiles]


def selection_preview(images: Mapping[int, np.ndarray], units: Sequence[Unit], *,
                      regions: Mapping[int, np.ndarray] | None = None,
                      image_ids: Sequence[str] | None = None,
                      clusters: Mapping[int, int] | None = None,
                      class_names: Sequence[str] | None = None,
                      title: str = "selection", max_tiles: int = 16) -> bytes:
    """The preview PNG of ``units`` (a round's picks).

    ``images``: pool index -> (H, W, 3) uint8, needed for the shown images
    (:func:`tile_order`); ``regions``: pool index -> (H, W) int region map, needed where a
    unit is a region; ``image_ids``: the pool's ids (N,); ``clusters``: pool index -> the
    image's cluster (-1 or missing: none); ``class_names`` for ``Unit.pred_class``. The
    title gets the count of units and images and, if some are not shown, how many; the PNG's
    ``Title`` text chunk holds it too."""
    shown = tile_order(units, max_tiles)
    by_image: dict[int, list[Unit]] = {}
    for u in sorted(units, key=lambda u: (-u.score, u.region_id)):
        by_image.setdefault(u.image_index, []).append(u)
    shown_set = set(shown)
    hidden = [u for u in units if u.image_index not in shown_set]
    title = f"{title} · {len(units)} units in {len(by_image)} images"
    if hidden:
        title += (f" · {len(by_image) - len(shown)} images ({len(hidden)} units) not shown,"
                  f" best {len(shown)} by score")
    from matplotlib.figure import Figure

    cols = max(1, min(MAX_COLS, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    h, w = images[shown[0]].shape[:2] if shown else (3, 4)
    tile_h = TILE_INCHES * h / w
    fig = Figure(figsize=(cols * TILE_INCHES, rows * (tile_h + CAPTION_INCHES) + TITLE_INCHES))
    fig_h = fig.get_figheight()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=CAPTION_INCHES / fig_h,
                        top=1 - TITLE_INCHES / fig_h, wspace=0.04, hspace=CAPTION_INCHES / tile_h)
    fig.suptitle(title, fontsize=8, y=1 - 0.1 * TITLE_INCHES / fig_h, va="top", wrap=True)
    for k in range(rows * cols):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.set_axis_off()
        if k < len(shown):
            i = shown[k]
            ax.imshow(_tile(images[i], by_image[i], regions), interpolation="nearest")
            ax.set_title(_caption(i, by_image[i], image_ids, clusters, class_names),
                         fontsize=6, y=-0.02, va="top", pad=0)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Title": title})
    return buf.getvalue()


def _tile(image: np.ndarray, picked: list[Unit],
          regions: Mapping[int, np.ndarray] | None) -> np.ndarray:
    thickness = max(1, round(max(image.shape[:2]) / 160))
    rids = [u.region_id for u in picked if u.is_region]
    if not rids:
        return outline(image, np.zeros(image.shape[:2], np.int32), [0], thickness=thickness)
    if regions is None:
        raise ValueError(f"image {picked[0].image_index} has picked regions but no region map")
    return outline(image, np.asarray(regions[picked[0].image_index]), rids,
                   thickness=thickness)


def _caption(i: int, picked: list[Unit], image_ids: Sequence[str] | None,
             clusters: Mapping[int, int] | None, class_names: Sequence[str] | None) -> str:
    name = f"#{i}" + (f" {image_ids[i][:16]}" if image_ids is not None else "")
    regions = [u for u in picked if u.is_region]
    why = f"{'best ' if regions else ''}score {picked[0].score:.3g}"
    cluster = (clusters or {}).get(i, -1)
    if cluster >= 0:
        why += f" · cluster {cluster}"
    if not regions:
        return f"{name}\n{why}"
    names = list(dict.fromkeys(
        class_names[u.pred_class] if class_names and 0 <= u.pred_class < len(class_names)
        else "?" for u in regions))
    more = f" +{len(names) - 3}" if len(names) > 3 else ""
    return f"{name}\n{why}\n{len(regions)} regions: {', '.join(names[:3])}{more}"


def write_preview(path: Path, png: bytes) -> Path:
    """Write ``png`` to ``path`` atomically (an existing file is replaced only when done)."""
    write_bytes_atomic(str(path), png)
    return path


def read_clusters(scores: Path, image_ids: Sequence[str]) -> dict[str, int]:
    """image id -> cluster (>= 0) of those images, from a round's ``scores`` table."""
    from segloop.data.parquet import read_table
    from segloop.data.schemas import SCORES

    if not scores.is_file() or not image_ids:
        return {}
    table = read_table(str(scores), SCORES, columns=["image_id", "cluster"],
                       filters=[("image_id", "in", list(image_ids))])
    return {r["image_id"]: int(r["cluster"]) for r in table.to_pylist()
            if r["cluster"] is not None and r["cluster"] >= 0}


def write_round_preview(ctx: ALContext, n: int, selection: Selection, path: Path,
                        max_tiles: int = 16) -> Path:
    """Round ``n``'s preview from the context's pool (images, region maps, ids), its scores
    table (``work/round_NNN/scores.parquet``: clusters) and class names; written to
    ``path`` atomically. Reads only the shown images from the pool."""
    pool, ac = ctx.pool, ctx.cfg.active
    shown = tile_order(selection.units, max_tiles)
    images = {i: np.asarray(pool.arrays.images[i]).transpose(1, 2, 0) for i in shown}
    regions = ({i: np.asarray(pool.regions[i]) for i in shown}
               if pool.regions is not None else None)
    ids = pool.arrays.image_ids
    by_id = read_clusters(ctx.work_dir(n) / "scores.parquet", [ids[i] for i in shown])
    clusters = {i: by_id[ids[i]] for i in shown if ids[i] in by_id}
    strategy = ac.initial_strategy if n == 0 else ac.strategy
    png = selection_preview(images, selection.units, regions=regions, image_ids=ids,
                            clusters=clusters, class_names=ctx.classes.names,
                            title=f"round {n} · {ac.level} level · {strategy}",
                            max_tiles=max_tiles)
    return write_preview(path, png)
