"""Config -> model and schedule (the one place that reads the ``train`` section)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from segloop.config import TrainConfig
from segloop.data.image_maps import ImageMaps, class_counts
from segloop.train.loop import TrainSettings
from segloop.train.models import build_model
from segloop.train.semi import SemiSettings


def model_recipe(tc: TrainConfig, num_classes: int) -> dict[str, object]:
    """What builds the model: stored in checkpoints so a mismatch is explained."""
    return {"model": tc.model, "width": tc.width, "depth": tc.depth, "dropout": tc.dropout,
            "num_classes": num_classes}


def build_from_config(tc: TrainConfig, num_classes: int) -> nn.Module:
    return build_model(tc.model, num_classes, width=tc.width, depth=tc.depth,
                       dropout=tc.dropout, pretrained=tc.pretrained)


def class_weights(tc: TrainConfig, labels: torch.Tensor | ImageMaps, num_classes: int,
                  ignore_index: int) -> tuple[float, ...] | None:
    """Per-class loss weights: none, given, or 1/sqrt(frequency) of the labelled pixels.

    ``labels`` (N, H, W) uint8 (dense, or :class:`ImageMaps`). Inverse-sqrt weights are
    normalised to mean 1 over the classes that occur; classes with no labelled pixel get
    weight 1.
    """
    if tc.class_weights == "none":
        return None
    if isinstance(tc.class_weights, tuple):
        if len(tc.class_weights) != num_classes:
            from segloop.errors import ConfigError

            raise ConfigError(f"train.class_weights: {len(tc.class_weights)} values given for "
                              f"{num_classes} classes; give one weight per class")
        return tc.class_weights
    counts = class_counts(labels, num_classes, ignore_index)
    present = counts > 0
    w = np.ones(num_classes)
    if present.any():
        freq = counts[present] / counts[present].sum()
        inv = 1.0 / np.sqrt(freq)
        w[present] = inv / inv.mean()
    return tuple(float(v) for v in w)


def train_settings(tc: TrainConfig, seed: int, weights: tuple[float, ...] | None
                   ) -> TrainSettings:
    """The ``train`` section's schedule with ``seed`` and class ``weights`` (C floats, or
    None); ``train.loader_workers`` becomes ``num_workers``."""
    return TrainSettings(steps=tc.steps, batch_size=tc.batch_size, lr=tc.lr,
                         weight_decay=tc.weight_decay, scale=tc.scale, flip=tc.flip,
                         class_weights=weights, seed=seed, label_sampling=tc.label_sampling,
                         loss=tc.loss, seed_background=tc.seed_background,
                         num_workers=tc.loader_workers)


def semi_settings(tc: TrainConfig) -> SemiSettings | None:
    """The ``train.semi`` section as settings, or None when it is off."""
    sc = tc.semi
    if not sc.enabled or sc.weight == 0:
        return None
    return SemiSettings(weight=sc.weight, threshold=sc.threshold, batch_size=sc.batch_size,
                        start_fraction=sc.start_fraction, ramp_fraction=sc.ramp_fraction,
                        ema_decay=sc.ema_decay, cutmix=sc.cutmix, color_jitter=sc.color_jitter,
                        uncertainty_weight=sc.uncertainty_weight)
