"""Fixed-step training with cross-entropy (ignore index, optional class weights), evaluation
and prediction that streams over a split in batches."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from segloop.data.image_maps import ImageMaps, labelled_counts
from segloop.errors import ModelOutputError
from segloop.train.arrays import augment
from segloop.train.batches import (
    PoolBatches,
    StepBatch,
    StepSampler,
    load_steps,
    pick_generator,
)
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
    """Fixed-step schedule: ``steps`` AdamW steps, linear warm-up then cosine decay to 0.

    ``num_workers``: worker processes of the loader that reads the batches (0 reads them in
    the training process); it changes where rows are read, never the losses."""

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
    num_workers: int = 0  # DataLoader worker processes reading batches (0: this process)


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
    :data:`Labels`). Labelled batches are drawn with replacement, weighted by
    ``settings.label_sampling``. With ``semi``, each step after its start also draws
    ``semi.batch_size`` images from ``unlabelled`` (indices into ``images``; default all)
    for the consistency loss (:mod:`segloop.train.semi`). ``refresh`` (e.g. region growing)
    replaces the training labels at each fraction of the steps in ``refresh_at``. Returns
    the loss of every step.

    Batches are read through a ``DataLoader`` with ``settings.num_workers`` worker
    processes (:mod:`segloop.train.batches`): the picks come from their own generator
    (:func:`~segloop.train.batches.pick_generator`), the rows are read in the workers, and
    augmentation and the teacher run here with a generator seeded with ``settings.seed``.
    The losses are the same for every number of workers; no worker outlives the call.
    """
    if settings.num_workers < 0:
        raise ValueError(f"train_model: num_workers must be >= 0, got {settings.num_workers}")
    weights = sampling_weights(labels, ignore_index, settings.label_sampling)
    if not bool((weights > 0).any()):
        raise ValueError("train_model: no image has a labelled pixel")
    gen = torch.Generator().manual_seed(settings.seed)
    picks = pick_generator(settings.seed)
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
    refresh_steps = ({int(f * settings.steps) for f in refresh_at} & set(range(settings.steps))
                     if refresh else set())
    # One loader per stretch of steps between label refreshes: new labels, new workers.
    bounds = sorted({0, settings.steps} | refresh_steps)
    losses: list[float] = []
    bar = tqdm(total=settings.steps, desc=desc, unit="step", disable=not progress, leave=False)
    try:
        for first, stop in itertools.pairwise(bounds):
            if first in refresh_steps and refresh is not None:
                labels = refresh(teacher.model if teacher is not None else model.eval())
                model.train()
                weights = sampling_weights(labels, ignore_index, settings.label_sampling)
            sampler = StepSampler(first, stop, settings.steps, weights, settings.batch_size,
                                  picks, semi, pool_u)
            batches = load_steps(PoolBatches(images, labels), sampler, settings.num_workers)
            with contextlib.closing(batches):
                for expected, batch in enumerate(batches, start=first):
                    if batch.step != expected:  # the loader keeps order; never reordered
                        raise RuntimeError(f"train_model: got step {batch.step}'s batch at "
                                           f"step {expected}")
                    losses.append(_train_step(model, teacher, opt, batch, gen, settings,
                                              semi, weight, ignore_index, device))
                    if not math.isfinite(losses[-1]):
                        raise ModelOutputError(
                            f"{desc}: the loss is {losses[-1]} at step {expected + 1} of "
                            f"{settings.steps} (learning rate {sched.get_last_lr()[0]:.3g}): "
                            f"training diverged. Lower train.lr (now {settings.lr:g}) or "
                            "check train.class_weights.")
                    sched.step()
                    bar.update(1)
                    if len(losses) % 25 == 0:
                        bar.set_postfix(loss=f"{sum(losses[-25:]) / 25:.3f}")
    finally:
        bar.close()
    return losses


def _train_step(model: nn.Module, teacher: EmaTeacher | None, opt: torch.optim.Optimizer,
                batch: StepBatch, gen: torch.Generator, settings: TrainSettings,
                semi: SemiSettings | None, weight: torch.Tensor | None, ignore_index: int,
                device: torch.device) -> float:
    """One optimiser step on a read batch (augmented here with ``gen``); returns its loss."""
    x = batch.images.float().div_(255.0)
    y = batch.labels.long()
    x, y = augment(x, y, gen, settings.scale, settings.flip, ignore_index)
    ramp = semi.ramp(batch.step, settings.steps) if semi is not None else 0.0
    if ramp > 0 and semi is not None and teacher is not None and batch.unlabelled is not None:
        ub = unlabelled_batch(batch.unlabelled, teacher, semi, settings.scale, settings.flip,
                              gen, device)
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
    if teacher is not None:
        teacher.update(model)
    return float(loss.detach())


@torch.no_grad()
def iter_probs(model: nn.Module, images: torch.Tensor, device: torch.device,
               batch_size: int = 32, mc_samples: int = 0, start: int = 0,
               stop: int | None = None) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield (index slice, softmax probabilities) batch by batch; memory does not grow with N.

    Probabilities are (B, C, H, W) float32, or with ``mc_samples`` = T > 0 the MC-dropout
    samples (T, B, C, H, W) (dropout on, batch norm in eval mode). ``start`` / ``stop``
    limit the pass to rows ``start:stop`` (slices stay absolute indices into ``images``).
    """
    model.to(device).eval()
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout | nn.Dropout2d)]
    end = images.shape[0] if stop is None else min(stop, images.shape[0])
    for first in range(start, end, batch_size):
        sl = slice(first, min(first + batch_size, end))
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
