"""Segmentation models that train from scratch on a CPU in minutes, behind one registry.

Every model maps images (B, 3, H, W) float32 in [0, 1] to logits (B, C, H, W) float32 and has
dropout layers, so MC-dropout (BALD) works on all of them. Architecture is built apart from
weight loading: ``pretrained`` only applies torchvision's published weights where the user has
them cached (never downloaded here).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from segloop.errors import ModelNotFoundError

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """ImageNet mean/std normalisation as a layer (inputs (B, 3, H, W) in [0, 1])."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net: ``depth`` down/up stages from ``width`` channels, dropout before the head.

    Input H and W need not be multiples of 2**depth (decoder features are resized to the skip).
    """

    def __init__(self, num_classes: int, width: int = 16, depth: int = 4,
                 dropout: float = 0.1) -> None:
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.norm = Normalize()
        self.down = nn.ModuleList([_block(3, chans[0])] + [
            _block(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                                 for i in reversed(range(depth))])
        self.fuse = nn.ModuleList([_block(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.bottleneck_dropout = nn.Dropout2d(dropout)
        self.dropout = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = self.bottleneck_dropout(skips.pop())
        for up, fuse in zip(self.up, self.fuse, strict=True):
            skip = skips.pop()
            x = up(x)
            if x.shape[-2:] != skip.shape[-2:]:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x, skip], dim=1))
        return self.head(self.dropout(x))


class _TorchvisionSeg(nn.Module):
    """Wraps a torchvision segmentation model: normalises input, returns ``out`` logits."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.norm = Normalize()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))["out"]


def _lraspp(num_classes: int, width: int, depth: int, dropout: float,
            pretrained: bool) -> nn.Module:
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    backbone = _backbone_weights(pretrained)
    net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=backbone,
                                    num_classes=num_classes)
    net.classifier.cbr.append(nn.Dropout2d(dropout))
    return _TorchvisionSeg(net)


def _deeplabv3(num_classes: int, width: int, depth: int, dropout: float,
               pretrained: bool) -> nn.Module:
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    backbone = _backbone_weights(pretrained)
    net = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=backbone,
                                       num_classes=num_classes, aux_loss=False)
    net.classifier.insert(len(net.classifier) - 1, nn.Dropout2d(dropout))
    return _TorchvisionSeg(net)


def _backbone_weights(pretrained: bool):  # type: ignore[no-untyped-def]
    """ImageNet MobileNetV3 weights if asked for and already in torch's cache, else None."""
    if not pretrained:
        return None
    from torchvision.models import MobileNet_V3_Large_Weights

    weights = MobileNet_V3_Large_Weights.IMAGENET1K_V1
    path = os.path.join(torch.hub.get_dir(), "checkpoints", weights.url.rsplit("/", 1)[-1])
    if not os.path.isfile(path):
        raise ModelNotFoundError(
            f"pretrained MobileNetV3-Large (ImageNet) weights not found at {path}. Download "
            f"{weights.url} to that path (or set TORCH_HOME), or set train.pretrained: false "
            "to train from scratch."
        )
    return weights


def _unet(num_classes: int, width: int, depth: int, dropout: float,
          pretrained: bool) -> nn.Module:
    if pretrained:
        raise ModelNotFoundError("train.model 'unet' has no pretrained weights: set "
                                 "train.pretrained: false, or use 'lraspp' / 'deeplabv3'")
    return UNet(num_classes, width=width, depth=depth, dropout=dropout)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet": _unet,
    "lraspp": _lraspp,
    "deeplabv3": _deeplabv3,
}


def build_model(name: str, num_classes: int, *, width: int = 16, depth: int = 4,
                dropout: float = 0.1, pretrained: bool = False) -> nn.Module:
    """Build a registered model with random weights (or pretrained backbone, if cached)."""
    if name not in MODELS:
        raise ModelNotFoundError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](num_classes, width, depth, dropout, pretrained)
