"""Per-image features for diversity-aware selection: what the model sees, or thumbnails.

``model`` features are the input of the model's last class-logit convolution (the
penultimate feature map: U-Net's ``head``, LR-ASPP's ``high_classifier``, DeepLabV3's
final 1x1 conv), captured with a forward pre-hook while the pool is scored, so they cost
no extra forward pass. ``thumbnail`` features need no model (round 0, cold start): each
image shrunk to 12x16 and standardised. Both are centred on the pool mean and L2-normalised,
so cosine similarity is a dot product and near-duplicates score close to 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

THUMBNAIL_HW = (12, 16)


def logit_layer(model: nn.Module, num_classes: int) -> nn.Conv2d:
    """The last Conv2d (in registration order) with ``num_classes`` output channels."""
    found = [m for m in model.modules()
             if isinstance(m, nn.Conv2d) and m.out_channels == num_classes]
    if not found:
        raise ValueError(f"{type(model).__name__} has no Conv2d with {num_classes} output "
                         "channels: cannot find its penultimate features")
    return found[-1]


class FeatureCapture:
    """Keeps the last input of the hooked layer: (B, D, h, w) float."""

    def __init__(self) -> None:
        self.x: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.x = args[0].detach()


@contextmanager
def capture_features(model: nn.Module, num_classes: int) -> Iterator[FeatureCapture]:
    """While the block runs, every forward of ``model`` records its penultimate features."""
    cap = FeatureCapture()
    handle = logit_layer(model, num_classes).register_forward_pre_hook(cap)
    try:
        yield cap
    finally:
        handle.remove()


def pooled(features: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) -> (B, D) float32 spatial mean."""
    return features.float().mean((2, 3))


def gradient_embedding(probs: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """BADGE's embedding for segmentation: the gradient of the summed cross-entropy against
    the model's own prediction w.r.t. a 1x1 logit layer on ``features``, per pixel mean.

    ``probs`` (B, C, H, W) softmax, ``features`` (B, D, h, w) -> (B, C * D) float32:
    mean over the h x w cells of (p - onehot(argmax p)) outer f, with p area-averaged to
    the features' grid. Its norm grows with uncertainty; its direction says about what.
    """
    b, c = probs.shape[:2]
    d, h, w = features.shape[1:]
    p = F.adaptive_avg_pool2d(probs.float(), (h, w)).flatten(2)  # (B, C, hw)
    onehot = F.one_hot(p.argmax(1), c).permute(0, 2, 1).float()  # (B, C, hw)
    f = features.float().flatten(2)  # (B, D, hw)
    return torch.bmm(p - onehot, f.transpose(1, 2)).div_(h * w).reshape(b, c * d)


def thumbnails(images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> (N, 3 * 12 * 16) float32: area-downsampled, each standardised."""
    out = torch.empty(images.shape[0], 3 * THUMBNAIL_HW[0] * THUMBNAIL_HW[1])
    for s in range(0, images.shape[0], batch_size):  # filled in place: one copy in memory
        x = F.adaptive_avg_pool2d(images[s : s + batch_size].float() / 255.0, THUMBNAIL_HW)
        x = x.flatten(1)
        out[s : s + x.shape[0]] = (x - x.mean(1, keepdim=True)) / x.std(
            1, keepdim=True).clamp_min(1e-6)
    return out


def normalise(features: torch.Tensor) -> torch.Tensor:
    """(N, D) -> centred on the mean row, rows scaled to unit length (zero rows stay 0)."""
    x = features.float() - features.float().mean(0, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
