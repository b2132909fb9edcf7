"""Fixed-step training with cross-entropy (ignore index, optional class weights), evaluation
and prediction that streams over a split in batches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from segloop.train.arrays import augment
from segloop.train.metrics import SegMetrics, confusion_matrix, metrics_from_confusion


@dataclass(frozen=True)
class TrainSettings:
    """Fixed-step schedule: ``steps`` AdamW steps, linear warm-up then cosine decay to 0."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    scale: tuple[float, float] = (0.75, 1.25)
    flip: bool = True
    class_weights: tuple[float, ...] | None = None
    seed: int = 0


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels; exactly 0 (with grad) if none is labelled.

    ``logits`` (B, C, H, W) float, ``labels`` (B, H, W) long with ``ignore_index`` for
    unlabelled pixels (partial labels from region rounds train only where labelled).
    """
    if not bool((labels != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, weight=weight, ignore_index=ignore_index)


def train_model(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                settings: TrainSettings, ignore_index: int, device: torch.device,
                progress: bool = True, desc: str = "training") -> list[float]:
    """Train in place for ``settings.steps`` steps on the images that have labelled pixels.

    ``images`` (N, 3, H, W) uint8, ``labels`` (N, H, W) uint8 (``ignore_index`` = not
    labelled). Batches are drawn with replacement by a seeded generator. Returns the loss
    of every step.
    """
    has_label = (labels != ignore_index).flatten(1).any(1).nonzero().flatten()
    if has_label.numel() == 0:
        raise ValueError("train_model: no image has a labelled pixel")
    gen = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr,
                            weight_decay=settings.weight_decay)
    warmup = max(1, int(settings.warmup_fraction * settings.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, settings.steps, warmup))
    weight = (torch.tensor(settings.class_weights, dtype=torch.float32, device=device)
              if settings.class_weights is not None else None)
    losses: list[float] = []
    bar = tqdm(range(settings.steps), desc=desc, unit="step", disable=not progress, leave=False)
    for _ in bar:
        pick = has_label[torch.randint(0, has_label.numel(), (settings.batch_size,),
                                       generator=gen)]
        x = images[pick].float().div_(255.0)
        y = labels[pick].long()
        x, y = augment(x, y, gen, settings.scale, settings.flip, ignore_index)
        loss = segmentation_loss(model(x.to(device)), y.to(device), ignore_index, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if len(losses) % 25 == 0:
            bar.set_postfix(loss=f"{sum(losses[-25:]) / 25:.3f}")
    return losses


@torch.no_grad()
def iter_probs(model: nn.Module, images: torch.Tensor, device: torch.device,
               batch_size: int = 32, mc_samples: int = 0
               ) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield (index slice, softmax probabilities) batch by batch; memory does not grow with N.

    Probabilities are (B, C, H, W) float32, or with ``mc_samples`` = T > 0 the MC-dropout
    samples (T, B, C, H, W) (dropout on, batch norm in eval mode).
    """
    model.to(device).eval()
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout | nn.Dropout2d)]
    for start in range(0, images.shape[0], batch_size):
        sl = slice(start, min(start + batch_size, images.shape[0]))
        x = images[sl].float().div_(255.0).to(device)
        if mc_samples <= 0:
            yield sl, model(x).softmax(1).float().cpu()
            continue
        for m in dropouts:
            m.train()
        try:
            yield sl, torch.stack([model(x).softmax(1).float().cpu()
                                   for _ in range(mc_samples)])
        finally:
            for m in dropouts:
                m.eval()


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             class_names: tuple[str, ...], ignore_index: int, device: torch.device,
             batch_size: int = 32) -> SegMetrics:
    """One confusion matrix over the whole split -> mIoU, per-class IoU (ignore excluded)."""
    c = len(class_names)
    cm = torch.zeros(c, c, dtype=torch.int64)
    for sl, probs in iter_probs(model, images, device, batch_size):
        cm += confusion_matrix(probs.argmax(1), labels[sl], c, ignore_index)
    return metrics_from_confusion(cm, class_names)
