"""Semi-supervised training on the unlabelled pool: confident pseudo-labels from an EMA
teacher on a weak view, learnt on a strong view (CutMix + colour jitter).

FixMatch-style weak/strong consistency (Sohn et al. 2020) with CutMix perturbation (French
et al. 2020), as UniMatch (Yang et al. 2023) does for segmentation, with a mean teacher
(Tarvainen and Valpola 2017) for steadier pseudo-labels when training from scratch. The
UIG uncertainty loss (Kawano's thesis ch. 4, eq. 4.1-4.2: mean per-pixel UIG of the softmax;
docs/algorithms.md §1) can be added on the unlabelled pixels. Pseudo-labels are never
labels: they are not counted, stored or costed anywhere.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from segloop.train.arrays import augment


@dataclass(frozen=True)
class SemiSettings:
    """Consistency training on unlabelled images (all values have a config field).

    ``weight`` scales the unlabelled loss; it ramps linearly from 0 at ``start_fraction`` of
    the steps to full at ``start_fraction + ramp_fraction`` (before ``start_fraction`` no
    unlabelled batch is drawn at all, so early steps cost what supervised ones do).
    ``threshold``: a teacher pixel whose top probability is below it is not learnt from.
    ``uncertainty_weight``: the UIG loss L_unc on the unlabelled pixels (0 = off).
    """

    weight: float = 1.0
    threshold: float = 0.9
    batch_size: int = 8
    start_fraction: float = 0.2
    ramp_fraction: float = 0.2
    ema_decay: float = 0.99
    cutmix: bool = True
    color_jitter: float = 0.4
    uncertainty_weight: float = 0.0

    def ramp(self, step: int, steps: int) -> float:
        """The unlabelled-loss factor at ``step`` (0 before the start, then up to 1)."""
        start = self.start_fraction * steps
        if step < start:
            return 0.0
        ramp = self.ramp_fraction * steps
        return 1.0 if ramp <= 0 else min(1.0, (step - start + 1) / ramp)


class EmaTeacher:
    """An exponential moving average of a model's weights (buffers copied), in eval mode."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for t, s in zip(self.model.parameters(), model.parameters(), strict=True):
            t.mul_(self.decay).add_(s.detach(), alpha=1.0 - self.decay)
        for t, s in zip(self.model.buffers(), model.buffers(), strict=True):
            t.copy_(s)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) float in [0, 1] -> top probability and class, each (B, H, W)."""
        conf, label = self.model(x).softmax(1).max(1)
        return conf, label


def cutmix_boxes(b: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """(B, H, W) bool: one random box per image covering a quarter to a half of it."""
    area = 0.25 + 0.25 * torch.rand(b, generator=generator)
    aspect = torch.exp((torch.rand(b, generator=generator) - 0.5) * math.log(3.0))
    bh = (h * torch.sqrt(area * aspect)).clamp(1, h).long()
    bw = (w * torch.sqrt(area / aspect)).clamp(1, w).long()
    y0 = (torch.rand(b, generator=generator) * (h - bh + 1)).long()
    x0 = (torch.rand(b, generator=generator) * (w - bw + 1)).long()
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    return ((ys >= y0.view(b, 1, 1)) & (ys < (y0 + bh).view(b, 1, 1))
            & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + bw).view(b, 1, 1)))


def mix(x: torch.Tensor, box: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """CutMix: inside each image's ``box`` (B, H, W), take image ``perm[i]``'s content.

    ``x`` is (B, ...) with the last two dims H, W (images, labels or confidences)."""
    m = box.view(box.shape[0], *([1] * (x.ndim - 3)), *box.shape[1:])
    return torch.where(m, x[perm], x)


def color_jitter(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Per-image brightness, contrast and saturation factors in [1 - s, 1 + s].

    ``x`` (B, 3, H, W) float in [0, 1]; the result is clamped to [0, 1]."""
    if strength <= 0:
        return x
    b = x.shape[0]

    def factor() -> torch.Tensor:
        return (1.0 + strength * (2 * torch.rand(b, generator=generator) - 1)).view(b, 1, 1, 1)

    x = x * factor()
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray) * factor() + gray
    return x.clamp(0.0, 1.0)


def uncertainty_loss(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Kawano's thesis eq. 4.1-4.2: mean over ``valid`` pixels of UIG(softmax(logits)).

    ``logits`` (B, C, H, W), ``valid`` (B, H, W) bool; 0 (with grad) where none is valid."""
    from segloop.active.acquisition import uig

    per_pixel = uig(logits.float().softmax(1), dim=1)  # (B, H, W)
    w = valid.to(per_pixel.dtype)
    return (per_pixel * w).sum() / w.sum().clamp_min(1.0)


@dataclass
class UnlabelledBatch:
    """A strong view with the teacher's targets: ``x`` (B, 3, H, W) float, ``target``
    (B, H, W) long, ``confident`` (B, H, W) bool, ``valid`` (B, H, W) bool (not padding)."""

    x: torch.Tensor
    target: torch.Tensor
    confident: torch.Tensor
    valid: torch.Tensor


def unlabelled_batch(images: torch.Tensor, teacher: EmaTeacher,
                     settings: SemiSettings, scale: tuple[float, float], flip: bool,
                     generator: torch.Generator, device: torch.device) -> UnlabelledBatch:
    """Weak view (the labelled batch's flips and scale jitter) -> teacher targets; strong
    view = CutMix of the weak views plus colour jitter, targets mixed the same way.

    ``images`` (U, 3, H, W) uint8: the unlabelled images as read (by the training loader,
    :mod:`segloop.train.batches`); every random draw here uses ``generator``."""
    x = images.float().div_(255.0)
    b, _, h, w = x.shape
    pad = torch.zeros(b, h, w, dtype=torch.long)  # 0 = image, -1 = padding after rescaling
    x, pad = augment(x, pad, generator, scale, flip, -1)
    conf, target = teacher.predict(x.to(device))
    conf, target = conf.cpu(), target.cpu()
    valid = pad >= 0
    if settings.cutmix and b > 1:
        box = cutmix_boxes(b, h, w, generator)
        perm = torch.roll(torch.arange(b), 1)
        x, conf, target, valid = (mix(t, box, perm) for t in (x, conf, target, valid))
    x = color_jitter(x, settings.color_jitter, generator)
    return UnlabelledBatch(x, target, (conf >= settings.threshold) & valid, valid)


def consistency_loss(logits: torch.Tensor, batch: UnlabelledBatch) -> torch.Tensor:
    """Cross-entropy on confident pixels, divided by all valid pixels (FixMatch/UniMatch):
    a teacher that is confident nowhere contributes 0 (with grad)."""
    per_pixel = F.cross_entropy(logits, batch.target.to(logits.device), reduction="none")
    mask = batch.confident.to(logits.device, per_pixel.dtype)
    return (per_pixel * mask).sum() / batch.valid.sum().clamp_min(1).to(logits.device)
