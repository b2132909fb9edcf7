"""What has been labelled so far: rebuilt from the committed label rounds, never kept aside.

A round folder written by the loop holds ``labels/<image_id>.png`` (uint8 id maps at the
working resolution, ``ignore_index`` outside the round's units), ``round.parquet`` (table
``label_round``: one row per unit) and ``round.json`` (how the round was made). The state
after rounds 0..k is the union of their units, later rounds painted over earlier ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segloop.active.pool import Pool
from segloop.config import ActiveConfig
from segloop.data.image_maps import ImageMaps
from segloop.data.json_io import read_json
from segloop.data.parquet import read_table
from segloop.data.schemas import LABEL_ROUND
from segloop.errors import ConfigError, DataError


@dataclass
class LabelState:
    """``labels`` (N, H, W) uint8 (ignore = unlabelled) and ``queried`` (N, H, W) bool: the
    pixels a person (or the simulated annotator) was asked about, void answers included.
    Both are :class:`~segloop.data.image_maps.ImageMaps`: stored only for the images that
    have a queried pixel, so the state's memory grows with the labels, not the pool."""

    labels: ImageMaps
    queried: ImageMaps
    clicks: int = 0

    @classmethod
    def empty(cls, pool: Pool, ignore_index: int) -> LabelState:
        n, hw = len(pool), pool.arrays.hw
        return cls(ImageMaps(n, hw, np.uint8, ignore_index), ImageMaps(n, hw, bool, False))

    @property
    def labelled_images(self) -> int:
        return int((self.queried.count_per_image() > 0).sum())

    @property
    def queried_pixels(self) -> int:
        return int(self.queried.count_per_image().sum())

    def image_queried(self) -> np.ndarray:
        """(N,) bool: images with any queried pixel (excluded from image-level rounds)."""
        return self.queried.count_per_image() > 0

    def unit_mask(self, pool: Pool, index: int, region_id: int) -> np.ndarray:
        """(H, W) bool mask of a unit: the whole image (-1) or one region."""
        if region_id < 0:
            return np.ones(pool.arrays.hw, bool)
        if pool.regions is None:
            raise DataError(f"region {region_id} asked for, but the pool has no regions")
        return pool.regions[index] == region_id

    def apply(self, pool: Pool, index: int, region_ids: Iterable[int],
              label: np.ndarray) -> None:
        """Mark the units of image ``index`` as queried and copy ``label`` (H, W) inside them."""
        for rid in region_ids:
            mask = self.unit_mask(pool, index, rid)
            self.queried.row(index)[mask] = True
            self.labels.row(index)[mask] = label[mask]
            self.clicks += int(rid >= 0)

    def query_everything(self, pool: Pool, labels: Any) -> None:
        """Every pixel queried, with ``labels`` (N, H, W; full supervision)."""
        for i in range(len(pool)):
            self.queried.row(i)[...] = True
            self.labels.row(i)[...] = np.asarray(labels[i])

    def summary(self, pool: Pool) -> dict[str, float | int]:
        return {
            "labelled_images": self.labelled_images,
            "labelled_pixels": self.queried_pixels,
            "image_fraction": self.labelled_images / len(pool),
            "pixel_fraction": self.queried_pixels / pool.total_pixels,
            "clicks": self.clicks,
        }


def round_settings(ac: ActiveConfig) -> dict[str, Any]:
    """The settings every round of one loop must share (checked when rounds are read)."""
    return {
        "level": ac.level,
        "image_size": list(ac.image_size) if ac.image_size else None,
        "pool_split": ac.pool_split,
        "region": ac.region.model_dump(mode="json") if ac.level == "region" else None,
    }


def read_round_meta(folder: Path) -> dict[str, Any]:
    path = folder / "round.json"
    if not path.is_file():
        raise DataError(f"{path} is missing: {folder} is not a label round written by segloop's "
                        "active-learning loop; restore it with `segloop rounds checkout`")
    return read_json(path, "restore the round with `segloop rounds checkout N` (or "
                     "`dvc checkout` in the workspace)")


def load_state(pool: Pool, folders: Iterable[Path], ac: ActiveConfig,
               ignore_index: int) -> LabelState:
    """Rebuild the label state from round folders (in order), checking they fit the config."""
    state = LabelState.empty(pool, ignore_index)
    index = pool.index_of()
    want = round_settings(ac)
    for folder in folders:
        meta = read_round_meta(folder)
        got = meta.get("settings")
        if got is None:
            raise ConfigError(
                f"{folder} was not written by the active-learning loop (its round.json has no "
                "settings; the smoke pipeline writes such rounds): point base.paths.workspace "
                "of this pipeline at a workspace of its own")
        if got != want:
            raise ConfigError(
                f"{folder}/round.json was made with settings {got}, but the config now says "
                f"{want}: a running loop must keep its level, image size, pool and regions. "
                "Restore the old values or use a new workspace (base.paths.workspace).")
        table = read_table(str(folder / "round.parquet"), LABEL_ROUND,
                           columns=["image_id", "region_id", "label_uri"])
        by_image: dict[str, list[int]] = {}
        uris: dict[str, str] = {}
        for row in table.to_pylist():
            by_image.setdefault(row["image_id"], []).append(int(row["region_id"]))
            uris[row["image_id"]] = row["label_uri"]
        for image_id, region_ids in by_image.items():
            if image_id not in index:
                raise DataError(f"{folder}: image {image_id} is not in the pool "
                                f"({ac.pool_split}); was the dataset changed?")
            label = np.asarray(Image.open(folder / uris[image_id]))
            if label.shape != pool.arrays.hw:
                raise DataError(f"{folder / uris[image_id]} is {label.shape}, the pool works "
                                f"at {pool.arrays.hw}")
            state.apply(pool, index[image_id], region_ids, label)
    return state
