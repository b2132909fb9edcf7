"""A split held in memory at the working resolution, and the batch augmentation.

CamVid at 96x128 is 37 KB per image: the whole pool fits in memory many times over, so the
loop trains and scores from uint8 tensors instead of re-decoding PNGs every step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from tqdm.auto import tqdm

from segloop.data.base import LoadedSample


@dataclass(frozen=True)
class SplitArrays:
    """``images`` (N, 3, H, W) uint8, ``labels`` (N, H, W) uint8 or None, ids and names (N,)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    image_ids: tuple[str, ...]
    names: tuple[str, ...]
    original_hw: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])


def resize_pair(image: np.ndarray, label: np.ndarray | None,
                size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Image (H, W, 3) uint8 bilinear, label (H, W) uint8 nearest, to ``size`` = (h, w)."""
    if size is None or tuple(image.shape[:2]) == tuple(size):
        return image, label
    h, w = size
    image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    if label is not None:
        label = np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
    return image, label


def stack_split(samples: Iterable[LoadedSample], size: tuple[int, int] | None,
                desc: str = "loading") -> SplitArrays:
    """Load, resize and stack a dataset's samples (all the same size after resizing)."""
    images, labels, ids, names, hws = [], [], [], [], []
    for s in tqdm(samples, desc=desc, unit="img", leave=False):
        img, lab = resize_pair(s.image, s.label, size)
        images.append(img)
        labels.append(lab)
        ids.append(s.image_id)
        names.append(s.sample.name)
        hws.append(tuple(s.image.shape[:2]))
    if not images:
        raise ValueError("stack_split: no samples")
    has_labels = all(lab is not None for lab in labels)
    return SplitArrays(
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
        labels=torch.from_numpy(np.stack(labels)) if has_labels else None,
        image_ids=tuple(ids), names=tuple(names), original_hw=tuple(hws),  # type: ignore[arg-type]
    )


def augment(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
            scale: tuple[float, float], flip: bool, ignore_index: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flip and scale jitter, cropped/padded back to the input size.

    ``images`` (B, 3, H, W) float, ``labels`` (B, H, W) long; padding is 0 / ``ignore_index``.
    One scale per batch (so the batch stays one tensor), flips per image.
    """
    b, _, h, w = images.shape
    if flip:
        mask = torch.rand(b, generator=generator) < 0.5
        images = torch.where(mask.view(b, 1, 1, 1), images.flip(-1), images)
        labels = torch.where(mask.view(b, 1, 1), labels.flip(-1), labels)
    lo, hi = scale
    s = float(lo + (hi - lo) * torch.rand(1, generator=generator).item())
    if abs(s - 1.0) < 1e-3:
        return images, labels
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    images = F.interpolate(images, size=(nh, nw), mode="bilinear", align_corners=False)
    labels = F.interpolate(labels[:, None].float(), size=(nh, nw), mode="nearest")[:, 0].long()
    if s > 1.0:
        y = int(torch.randint(0, nh - h + 1, (1,), generator=generator))
        x = int(torch.randint(0, nw - w + 1, (1,), generator=generator))
        return images[..., y:y + h, x:x + w], labels[..., y:y + h, x:x + w]
    pad = (0, w - nw, 0, h - nh)
    return F.pad(images, pad, value=0.0), F.pad(labels, pad, value=ignore_index)
