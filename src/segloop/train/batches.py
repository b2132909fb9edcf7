"""Training batches read through a torch ``DataLoader``: picks in the main process, reads in
the workers.

:func:`segloop.train.loop.train_model` needs, at each step, a labelled batch (images drawn
with replacement, weighted by their labelled pixels) and, once semi-supervision has started,
an unlabelled batch. Reading them (from a pool cache on disk, or from memory) is what the
loader's worker processes do; everything random that touches pixels (augmentation, teacher
predictions, CutMix) stays in the main process with the training generator.

* :class:`StepSampler` draws every step's picks from its own generator
  (:func:`pick_generator`, seeded from the training seed): the picks do not depend on how
  far ahead the workers prefetch, nor on the training generator, so the losses are the same
  bit for bit for any number of workers.
* :class:`PoolBatches` reads the picked rows: images (B, 3, H, W) uint8 and label rows
  (B, H, W) from a tensor, a :class:`~segloop.active.pool_cache.ShardedArray` or
  :class:`~segloop.data.image_maps.ImageMaps` (all picklable: a sharded array opens its
  memory maps per read, never holds them).
* :func:`load_steps` runs one loader over a range of steps and shuts its workers down when
  the range is done, the caller stops, or anything raises. Labels that change during
  training (region growing) start a new range with a new loader (new workers see the new
  labels); ``persistent_workers`` is off because no loader is iterated twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from segloop.data.image_maps import rows_of
from segloop.train.semi import SemiSettings

PICK_SEED_FACTOR = 7919
"""The pick generator's seed is ``seed * PICK_SEED_FACTOR + 1`` (mod 2**63): a stream apart
from the training generator (seeded with ``seed`` itself) for every seed."""


def pick_generator(seed: int) -> torch.Generator:
    """The generator that draws training picks for training seed ``seed``."""
    return torch.Generator().manual_seed((seed * PICK_SEED_FACTOR + 1) % (1 << 63))


@dataclass(frozen=True)
class StepPicks:
    """What one step reads: ``pick`` (B,) int64 indices of labelled images, ``upick`` (U,)
    int64 indices of unlabelled images (None on steps without an unlabelled batch)."""

    step: int
    pick: torch.Tensor
    upick: torch.Tensor | None


@dataclass(frozen=True)
class StepBatch:
    """One step's data as read: ``images`` (B, 3, H, W) uint8, ``labels`` (B, H, W) (the
    labels' dtype, uint8 for the pool; ``ignore_index`` = not labelled), ``unlabelled``
    (U, 3, H, W) uint8 or None."""

    step: int
    images: torch.Tensor
    labels: torch.Tensor
    unlabelled: torch.Tensor | None


class StepSampler(Sampler[StepPicks]):
    """The picks of steps ``start`` .. ``stop - 1``, drawn from ``generator`` in step order.

    Each step draws ``batch_size`` labelled images with replacement, weighted by ``weights``
    (N,) float; when ``semi`` ramps above 0 at that step (of ``steps``), it then draws
    ``semi.batch_size`` of ``unlabelled`` (U,) int64 indices uniformly with replacement. The
    generator is advanced only by iterating, once per step, in the main process: the picks
    of a step depend on the seed and the steps before it, not on prefetching.
    """

    def __init__(self, start: int, stop: int, steps: int, weights: torch.Tensor,
                 batch_size: int, generator: torch.Generator,
                 semi: SemiSettings | None = None,
                 unlabelled: torch.Tensor | None = None) -> None:
        self.start, self.stop, self.steps = start, stop, steps
        self.weights, self.batch_size, self.generator = weights, batch_size, generator
        self.semi = semi
        self.unlabelled = (unlabelled if unlabelled is not None
                           else torch.zeros(0, dtype=torch.int64))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[StepPicks]:
        for step in range(self.start, self.stop):
            pick = torch.multinomial(self.weights, self.batch_size, replacement=True,
                                     generator=self.generator)
            upick = None
            if (self.semi is not None and self.unlabelled.numel() > 0
                    and self.semi.ramp(step, self.steps) > 0):
                at = torch.randint(0, self.unlabelled.numel(), (self.semi.batch_size,),
                                   generator=self.generator)
                upick = self.unlabelled[at]
            yield StepPicks(step, pick, upick)


class PoolBatches(Dataset[StepBatch]):
    """Reads a step's rows: ``images`` (N, 3, H, W) uint8 and ``labels`` (N, H, W), each a
    tensor or any view indexed like one (a pool cache's :class:`ShardedArray`,
    :class:`ImageMaps`). Indexed by :class:`StepPicks`, not by integers."""

    def __init__(self, images: Any, labels: Any) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, picks: StepPicks) -> StepBatch:  # type: ignore[override]
        images = torch.as_tensor(self.images[picks.pick])
        labels = rows_of(self.labels, picks.pick)
        unlabelled = (torch.as_tensor(self.images[picks.upick])
                      if picks.upick is not None else None)
        return StepBatch(picks.step, images, labels, unlabelled)


def _as_is(batch: StepBatch) -> StepBatch:
    """The loader's collate function: a step is read whole, nothing to stack."""
    return batch


def load_steps(dataset: PoolBatches, sampler: StepSampler, num_workers: int
               ) -> Iterator[StepBatch]:
    """The sampler's steps as read batches, in step order, through a ``DataLoader`` with
    ``num_workers`` worker processes (0: read in this process; the same code path).

    A generator: close it (or exhaust it) and the workers are gone; ``contextlib.closing``
    around it ends them when the consumer raises.
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    loader = DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=num_workers,
                        collate_fn=_as_is, persistent_workers=False,
                        # The loader draws a base seed for its workers; its own generator
                        # keeps that draw off the global RNG (dropout, weight init).
                        generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    try:
        yield from it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:  # multi-process iterator: join the workers now
            shutdown()
