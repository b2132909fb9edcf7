"""Pseudo-label seeds in the active-learning loop (``active.pseudolabels``).

A pseudo-label round of the pseudolabel flow holds ``labels/<image_id>.png`` at the images'
original size with the target classes' ids and 255 where the method abstained. Here they
are matched to the pool by image id, resized (nearest) to the working resolution, and
kept apart from the human labels: the model trains on a person's label wherever one
exists and on the pseudo-label elsewhere. Pseudo-labels never count as labelled pixels,
as cost, or as queried; the acquisition strategy still sees those pixels as unlabelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segloop.active.pool import Pool
from segloop.data.image_maps import ImageMaps
from segloop.errors import DataError
from segloop.pseudolabel.label_mapping import ABSTAIN
from segloop.pseudolabel.store import LABELS_DIR, read_round_meta


@dataclass(frozen=True)
class Seeds:
    """``labels`` (N, H, W) uint8 pool-aligned pseudo-labels (ignore where none; stored for
    the images the round covers) and where they came from."""

    labels: ImageMaps
    folder: str
    method: str
    round: int
    fingerprint: str
    images: int
    pixels: int

    def summary(self) -> dict[str, Any]:
        return {"pseudo_labelled_images": self.images, "pseudo_labelled_pixels": self.pixels,
                "pseudolabels": f"{self.method} round {self.round:03d}"}

    def recipe(self) -> dict[str, Any]:
        return {"method": self.method, "round": self.round, "fingerprint": self.fingerprint}


def resolve_folder(value: str, workspace: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() else workspace / path


def load_seeds(pool: Pool, folder: Path, num_classes: int, ignore_index: int) -> Seeds:
    """Read a pseudo-label round for the pool images it covers."""
    meta = read_round_meta(folder)
    labels = ImageMaps(len(pool), pool.arrays.hw, np.uint8, ignore_index)
    h, w = pool.arrays.hw
    images = 0
    for i, image_id in enumerate(pool.arrays.image_ids):
        path = folder / LABELS_DIR / f"{image_id}.png"
        if not path.is_file():
            continue
        label = np.asarray(Image.open(path))
        if label.ndim != 2:
            raise DataError(f"{path} is not a single-channel label map (shape {label.shape})")
        if label.shape != (h, w):
            label = np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
        bad = np.setdiff1d(np.unique(label), [*range(num_classes), ABSTAIN, ignore_index])
        if bad.size:
            raise DataError(f"{path} holds class ids {bad.tolist()} that data.classes lacks "
                            f"({num_classes} classes): the round was made for other classes")
        labels[i] = np.where(label == ABSTAIN, ignore_index, label)
        images += 1
    if images == 0:
        raise DataError(f"{folder} has no pseudo-label for any of the {len(pool)} pool images "
                        "(matched by image content id): label the pool split with the "
                        "pseudolabel flow, or fix active.pseudolabels")
    return Seeds(labels, str(folder), str(meta.get("method")), int(meta.get("round", 0)),
                 str(meta.get("fingerprint")), images,
                 int(labels.count_per_image().sum()))


def training_labels(human: ImageMaps, queried: ImageMaps, seeds: Seeds | None
                    ) -> ImageMaps:
    """(N, H, W) uint8: the human label where a pixel was queried, else the seed label."""
    if seeds is None:
        return human
    out = seeds.labels.copy()
    for i, q in queried.items():
        row = out.row(i)
        row[q] = human[i][q]
    return out
