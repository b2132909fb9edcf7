"""Writing an active-learning round's folder (read back by :mod:`segloop.active.state`)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from segloop.active.pool import Pool
from segloop.active.selection import Selection
from segloop.active.state import round_settings
from segloop.config import Config
from segloop.data.parquet import write_table
from segloop.data.schemas import LABEL_ROUND


def write_round_folder(folder: Path, pool: Pool, n: int, selection: Selection,
                       labels: dict[int, np.ndarray], cfg: Config, strategy: str,
                       annotator: str, created: datetime, scores: Path | None = None,
                       labelled: dict[tuple[int, int], int] | None = None,
                       extra: dict[str, object] | None = None) -> None:
    """Fill ``folder`` with round ``n``: ``labels/<image_id>.png`` ((H, W) uint8 at the working
    resolution, ignore outside the round's units), ``round.parquet`` (one row per unit),
    ``round.json`` (settings, budget, spend, and ``extra``) and, if given, ``scores.parquet``.

    ``labelled`` (image index, region id) -> pixels a person actually labelled in the unit
    (imported rounds); without it a unit counts as fully labelled (simulated annotator)."""
    (folder / "labels").mkdir()
    ids = pool.arrays.image_ids
    total = pool.pixels_per_image
    for i, label in labels.items():
        Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8)).save(
            folder / "labels" / f"{ids[i]}.png")
    click = cfg.active.click_cost_pixels
    rows = [{
        "round": n, "image_id": ids[u.image_index], "name": pool.arrays.names[u.image_index],
        "region_id": u.region_id, "label_uri": f"labels/{ids[u.image_index]}.png",
        "labelled_pixels": (u.pixels if labelled is None
                            else labelled.get((u.image_index, u.region_id), 0)),
        "total_pixels": total,
        "cost": float(u.pixels + (click if u.region_id >= 0 else 0.0)), "strategy": strategy,
        "score": None if strategy == "random" or not np.isfinite(u.score) else float(u.score),
        "annotator": annotator, "created_at": created,
    } for u in selection.units]
    write_table(str(folder / "round.parquet"), LABEL_ROUND, rows)
    meta = {
        "round": n, "strategy": strategy, "annotator": annotator, "seed": cfg.base.seed,
        "settings": round_settings(cfg.active), "selection": selection.to_dict(),
        "pool_images": len(pool), "pool_pixels": pool.total_pixels,
        "created_at": created.isoformat(), **(extra or {}),
    }
    (folder / "round.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    if scores is not None and scores.is_file():
        shutil.copyfile(scores, folder / "scores.parquet")
