"""Fixed-step training with cross-entropy (ignore index, optional class weights), evaluation
and prediction that streams over a split in batches."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from segloop.data.image_maps import ImageMaps, labelled_counts, rows_of
from segloop.train.arrays import augment
from segloop.train.metrics import SegMetrics, confusion_matrix, metrics_from_confusion
from segloop.train.seed_loss import balanced_seed_loss
from segloop.train.semi import (
    EmaTeacher,
    SemiSettings,
    consistency_loss,
    uncertainty_loss,
    unlabelled_batch,
)


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
    label_sampling: str = "image"
    loss: str = "ce"  # or "balanced_seed" (segloop.train.seed_loss)
    seed_background: int | None = None


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int,
                      weight: torch.Tensor | None = None,
                      settings: TrainSettings | None = None) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels; exactly 0 (with grad) if none is labelled.

    ``logits`` (B, C, H, W) float, ``labels`` (B, H, W) long with ``ignore_index`` for
    unlabelled pixels (partial labels from region rounds train only where labelled).
    ``settings.loss`` "balanced_seed": Kim 2022's balanced seed loss instead (background
    ``settings.seed_background`` and foreground pixels averaged apart; no class weights).
    """
    if settings is not None and settings.loss == "balanced_seed":
        return balanced_seed_loss(logits, labels, settings.seed_background, ignore_index)
    if not bool((labels != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, weight=weight, ignore_index=ignore_index)


def sampling_weights(labels: Labels, ignore_index: int, by: str) -> torch.Tensor:
    """(N,) float: how often each image is drawn for the labelled batch.

    ``by`` = "image": every image with a labelled pixel alike; "pixels": in proportion to
    its labelled pixels (sparse region labels are not starved by images that hold one
    small region). Images without labelled pixels get 0.
    """
    counts = labelled_counts(labels, ignore_index)
    if by == "image":
        return (counts > 0).double()
    if by == "pixels":
        return counts
    raise ValueError(f"unknown label sampling {by!r}; use 'image' or 'pixels'")


Labels = torch.Tensor | ImageMaps
"""(N, H, W) uint8 training labels: a dense tensor, or :class:`ImageMaps` (stored only for
the images that have labels; the rest read as ``ignore_index``)."""

LabelRefresh = Callable[[nn.Module], Labels]
"""Called with the (EMA teacher or) model in eval mode; returns new (N, H, W) uint8 labels."""


def train_model(model: nn.Module, images: torch.Tensor, labels: Labels,
                settings: TrainSettings, ignore_index: int, device: torch.device,
                progress: bool = True, desc: str = "training",
                semi: SemiSettings | None = None, unlabelled: torch.Tensor | None = None,
                refresh: LabelRefresh | None = None,
                refresh_at: tuple[float, ...] = ()) -> list[float]:
    """Train in place for ``settings.steps`` steps on the images that have labelled pixels.

    ``images`` (N, 3, H, W) uint8 (a tensor, or any view indexed like one, e.g. the pool
    cache's), ``labels`` (N, H, W) uint8 (``ignore_index`` = not labelled; see
    :data:`Labels`). Labelled batches are drawn with replacement by a seeded generator, weighted
    by ``settings.label_sampling``. With ``semi``, each step after its start also draws
    ``semi.batch_size`` images from ``unlabelled`` (indices into ``images``; default all)
    for the consistency loss (:mod:`segloop.train.semi`). ``refresh`` (e.g. region growing)
    replaces the training labels at each fraction of the steps in ``refresh_at``. Returns
    the loss of every step.
    """
    weights = sampling_weights(labels, ignore_index, settings.label_sampling)
    if not bool((weights > 0).any()):
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
    teacher = EmaTeacher(model, semi.ema_decay) if semi is not None else None
    pool_u = (unlabelled if unlabelled is not None else torch.arange(images.shape[0]))
    refresh_steps = {int(f * settings.steps) for f in refresh_at} if refresh else set()
    losses: list[float] = []
    bar = tqdm(range(settings.steps), desc=desc, unit="step", disable=not progress, leave=False)
    for step in bar:
        if step in refresh_steps and refresh is not None:
            labels = refresh(teacher.model if teacher is not None else model.eval())
            model.train()
            weights = sampling_weights(labels, ignore_index, settings.label_sampling)
        pick = torch.multinomial(weights, settings.batch_size, replacement=True, generator=gen)
        x = images[pick].float().div_(255.0)
        y = rows_of(labels, pick).long()
        x, y = augment(x, y, gen, settings.scale, settings.flip, ignore_index)
        ramp = semi.ramp(step, settings.steps) if semi is not None else 0.0
        if ramp > 0 and semi is not None and teacher is not None and pool_u.numel() > 0:
            upick = pool_u[torch.randint(0, pool_u.numel(), (semi.batch_size,), generator=gen)]
            ub = unlabelled_batch(images, upick, teacher, semi, settings.scale,
                                  settings.flip, gen, device)
            logits = model(torch.cat([x, ub.x]).to(device))
            sup, uns = logits[: x.shape[0]], logits[x.shape[0]:]
            loss = segmentation_loss(sup, y.to(device), ignore_index, weight, settings)
            loss = loss + ramp * semi.weight * consistency_loss(uns, ub)
            if semi.uncertainty_weight > 0:
                loss = loss + ramp * semi.uncertainty_weight * uncertainty_loss(
                    uns, ub.valid.to(device))
        else:
            loss = segmentation_loss(model(x.to(device)), y.to(device), ignore_index, weight,
                                     settings)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if teacher is not None:
            teacher.update(model)
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
