"""The U-SAM head: an MLP per mask embedding, trained as teacher (MIL) and student (MIL plus
uncertainty distillation), and its predictions (U-SAM, Kundu et al.;
docs/algorithms.md §2, steps 3-7).

Training data comes from a caller-supplied ``batches(epoch)`` iterator of
((B, d, in_dim) float mask embeddings, (B, C) multi-hot float targets); float16 embeddings
are cast to float32 on the training device.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from segloop.errors import ModelOutputError
from segloop.pseudolabel.mil import bad_set, mask_entropy, mil_loss, student_loss

MASK_EMBEDDING_DIM = 1024

BagBatch = tuple[torch.Tensor, torch.Tensor]
Batches = Callable[[int], Iterable[BagBatch]]


@dataclass(frozen=True)
class USamSettings:
    """Head and training settings (paper values where it gives them)."""

    hidden: int = 512  # MLP width (the paper does not say: config default)
    layers: int = 4  # Linear layers; ReLU between them
    dropout: float = 0.0
    a: int = 10  # k = max(1, ceil(d / a))
    tau: float | None = None  # None = median teacher mask entropy over the training set
    lambda_mil: float = 1.0
    lambda_unc: float = 0.15
    lr: float = 1e-3  # Adam
    batch_size: int = 64  # images per step (the caller's batch iterator uses it)
    epochs: int = 20
    seed: int = 0


class MaskHead(nn.Module):
    """MLP classifier per mask: (..., in_dim) float -> (..., C) logits.

    ``layers`` Linear layers: in_dim -> hidden -> ... -> hidden -> C, ReLU (and dropout if
    > 0) after every layer but the last.
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 512, layers: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if in_dim < 1 or num_classes < 1 or hidden < 1 or layers < 1:
            raise ValueError(f"MaskHead needs in_dim, num_classes, hidden, layers >= 1; got "
                             f"{in_dim}, {num_classes}, {hidden}, {layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_dim, self.num_classes = in_dim, num_classes
        widths = [in_dim] + [hidden] * (layers - 1) + [num_classes]
        modules: list[nn.Module] = []
        for i in range(layers):
            modules.append(nn.Linear(widths[i], widths[i + 1]))
            if i < layers - 1:
                modules.append(nn.ReLU())
                if dropout > 0:
                    modules.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*modules)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_dim) float32 -> (..., C) float32 logits."""
        return self.net(x)


def build_head(num_classes: int, settings: USamSettings,
               in_dim: int = MASK_EMBEDDING_DIM) -> MaskHead:
    """A freshly initialised head (uses the global torch RNG: seed before calling)."""
    return MaskHead(in_dim, num_classes, settings.hidden, settings.layers, settings.dropout)


@dataclass
class TrainHistory:
    """Per epoch: loss, mil, unc (0 for the teacher), bad_fraction (student only, else 0),
    steps; losses are image-weighted means over the epoch. ``seconds``: wall time."""

    epochs: list[dict[str, float]]
    seconds: float


def _device_of(head: nn.Module) -> torch.device:
    return next(head.parameters()).device


def _checked(batch: BagBatch, num_classes: int, in_dim: int, where: str,
             device: torch.device) -> tuple[Tensor, Tensor]:
    bags, targets = batch
    bags, targets = torch.as_tensor(bags), torch.as_tensor(targets)
    if bags.dim() != 3 or bags.shape[-1] != in_dim:
        raise ValueError(f"{where}: bags must be (B, d, {in_dim}), got {tuple(bags.shape)}")
    if targets.dim() != 2 or targets.shape[1] != num_classes:
        raise ValueError(f"{where}: targets must be (B, {num_classes}) for num_classes="
                         f"{num_classes}, got {tuple(targets.shape)}")
    if targets.shape[0] != bags.shape[0]:
        raise ValueError(f"{where}: {bags.shape[0]} bags but {targets.shape[0]} targets")
    return bags.to(device, torch.float32), targets.to(device, torch.float32)


# One step's loss: (head, bags, targets) -> (total, mil, unc, bad masks, all masks).
StepLoss = Callable[[MaskHead, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, int, int]]


def _fit(batches: Batches, num_classes: int, settings: USamSettings, device: torch.device | str,
         progress: bool, seed: int, desc: str, step_loss: StepLoss,
         in_dim: int) -> tuple[MaskHead, TrainHistory]:
    if settings.epochs < 1:
        raise ValueError(f"settings.epochs must be >= 1, got {settings.epochs}")
    start = time.perf_counter()
    device = torch.device(device)
    torch.manual_seed(seed)
    head = build_head(num_classes, settings, in_dim).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=settings.lr)
    history: list[dict[str, float]] = []
    bar = tqdm(range(settings.epochs), desc=desc, disable=not progress, unit="epoch")
    for epoch in bar:
        head.train()
        sums = {"loss": 0.0, "mil": 0.0, "unc": 0.0}
        images = steps = bad = masks = 0
        for batch in batches(epoch):
            bags, targets = _checked(batch, num_classes, in_dim, f"{desc} epoch {epoch}",
                                     device)
            total, mil, unc, n_bad, n_masks = step_loss(head, bags, targets)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            b = bags.shape[0]
            for key, value in (("loss", total), ("mil", mil), ("unc", unc)):
                sums[key] += float(value.detach()) * b
            images, steps, bad, masks = images + b, steps + 1, bad + n_bad, masks + n_masks
        if steps == 0:
            raise ValueError(f"{desc}: batches({epoch}) yielded no mini-batches: "
                             "there is nothing to train on")
        row = {k: v / images for k, v in sums.items()}
        if not math.isfinite(row["loss"]):
            raise ModelOutputError(
                f"{desc}: the loss is {row['loss']} in epoch {epoch + 1} of {settings.epochs}: "
                f"training diverged. Lower usam.lr (now {settings.lr:g}), and check that the "
                "embed output holds finite mask embeddings.")
        row |= {"bad_fraction": bad / masks if masks else 0.0, "steps": float(steps)}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}")
    head.eval()
    return head, TrainHistory(history, time.perf_counter() - start)


def train_teacher(batches: Batches, num_classes: int, settings: USamSettings,
                  device: torch.device | str = "cpu", progress: bool = True,
                  in_dim: int = MASK_EMBEDDING_DIM) -> tuple[MaskHead, TrainHistory]:
    """The teacher: a head seeded with ``settings.seed``, trained with L_MIL only (Adam).

    ``batches(epoch)`` yields ((B, d, in_dim) float, (B, C) multi-hot float) mini-batches.
    Returns the head (eval mode, on ``device``) and its history.
    """
    def step(head: MaskHead, bags: Tensor,
             targets: Tensor) -> tuple[Tensor, Tensor, Tensor, int, int]:
        mil = mil_loss(head(bags), targets, settings.a)
        return mil, mil, torch.zeros(()), 0, 0

    return _fit(batches, num_classes, settings, device, progress, settings.seed,
                "U-SAM teacher", step, in_dim)


@torch.no_grad()
def median_entropy(teacher: MaskHead, batches: Iterable[BagBatch],
                   device: torch.device | str | None = None) -> float:
    """Exact median of the teacher's per-mask entropies over every mask of every bag given.

    ``device`` None = the teacher's own device. The teacher's train/eval mode is restored.
    """
    device = _device_of(teacher) if device is None else torch.device(device)
    net = teacher if device == _device_of(teacher) else copy.deepcopy(teacher).to(device)
    was_training = net.training
    net.eval()
    chunks: list[np.ndarray] = []
    try:
        for i, batch in enumerate(batches):
            bags, targets = _checked(batch, teacher.num_classes, teacher.in_dim,
                                     f"median_entropy batch {i}", device)
            chunks.append(mask_entropy(net(bags)).flatten().cpu().numpy().astype(np.float32))
    finally:
        net.train(was_training)
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise ValueError("median_entropy: batches yielded no masks")
    return float(np.median(np.concatenate(chunks)))


def train_student(batches: Batches, teacher: MaskHead, tau: float, num_classes: int,
                  settings: USamSettings, device: torch.device | str = "cpu",
                  progress: bool = True,
                  in_dim: int = MASK_EMBEDDING_DIM) -> tuple[MaskHead, TrainHistory]:
    """The student: a fresh head (seed ``settings.seed + 1``) trained with
    lambda_mil * L_MIL + lambda_unc * L_unc over the teacher's bad sets (entropy cut ``tau``).

    The teacher is used frozen, in eval mode, on a copy on ``device`` (the caller's module is
    not moved). ``bad_fraction`` in the history is the share of masks in bad sets.
    """
    if teacher.num_classes != num_classes or teacher.in_dim != in_dim:
        raise ValueError(f"teacher is {teacher.in_dim} -> {teacher.num_classes}, but the "
                         f"student is asked for {in_dim} -> {num_classes}")
    frozen = copy.deepcopy(teacher).to(torch.device(device)).eval().requires_grad_(False)

    def step(head: MaskHead, bags: Tensor,
             targets: Tensor) -> tuple[Tensor, Tensor, Tensor, int, int]:
        with torch.no_grad():
            bad = bad_set(frozen(bags), targets, tau)
        total, mil, unc = student_loss(head(bags), targets, bad, settings.a,
                                       settings.lambda_mil, settings.lambda_unc)
        return total, mil, unc, int(bad.sum()), bad.numel()

    return _fit(batches, num_classes, settings, device, progress, settings.seed + 1,
                "U-SAM student", step, in_dim)


@torch.inference_mode()
def predict(head: MaskHead, tokens: np.ndarray | Tensor, device: torch.device | str | None = None,
            batch_size: int = 256) -> np.ndarray:
    """Class probabilities per mask embedding.

    tokens: (n, d, in_dim) or (m, in_dim), any float dtype (float16 is cast to float32).
    Returns float32 numpy of shape tokens.shape[:-1] + (C,), softmax over the classes.
    ``batch_size`` counts leading-axis items (images for 3-D input, masks for 2-D) per
    forward pass. ``device`` None = the head's own device (else a copy is moved there).
    The head's train/eval mode is restored afterwards.
    """
    x = tokens if isinstance(tokens, Tensor) else np.asarray(tokens)
    if x.ndim not in (2, 3) or x.shape[-1] != head.in_dim:
        raise ValueError(f"tokens must be (n, d, {head.in_dim}) or (m, {head.in_dim}), "
                         f"got {tuple(x.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _device_of(head) if device is None else torch.device(device)
    net = head if device == _device_of(head) else copy.deepcopy(head).to(device)
    was_training = net.training
    net.eval()
    out = np.empty((*x.shape[:-1], head.num_classes), np.float32)
    try:
        for s in range(0, x.shape[0], batch_size):
            part = x[s : s + batch_size]
            # numpy chunks are copied to float32 (read-only arrays, e.g. from Arrow, are fine)
            chunk = (part if isinstance(part, Tensor)
                     else torch.from_numpy(np.array(part, np.float32))).to(device, torch.float32)
            out[s : s + batch_size] = torch.softmax(net(chunk), dim=-1).cpu().numpy()
    finally:
        net.train(was_training)
    return out
