"""Score the unlabelled pool, streaming in batches, into candidate units and a score table.

Memory stays flat in the pool's pixels: only one batch of probabilities exists at a time;
what is kept per image is small (a score per unit, a pooled feature vector, class shares).
The round's ``scores`` table (one row per candidate unit, with why it was or was not
picked) is written once the units are chosen (:mod:`segloop.active.choose`).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from segloop.active.acquisition import (
    STRATEGIES,
    check_strategy,
    image_scores,
    pixel_scores,
    random_scores,
    region_majority,
    region_scores,
)
from segloop.active.features import capture_features, gradient_embedding, pooled
from segloop.active.pool import Pool
from segloop.active.selection import Unit
from segloop.active.state import LabelState
from segloop.data.parquet import TableWriter
from segloop.data.schemas import SCORES
from segloop.train.loop import iter_probs

_MC_LOCK = threading.Lock()
"""MC-dropout scoring seeds torch's global generator: one such scan at a time per process."""


def score_row(round_number: int, pool: Pool, u: Unit, strategy: str) -> dict[str, object]:
    """The ``scores`` table columns every candidate has (v1 columns)."""
    return {"round": round_number, "image_id": pool.arrays.image_ids[u.image_index],
            "region_id": u.region_id, "strategy": strategy, "score": float(u.score),
            "pixels": u.pixels, "pred_class": u.pred_class}


def candidate_units_random(pool: Pool, state: LabelState, level: str,
                           generator: torch.Generator) -> list[Unit]:
    """Every unlabelled unit with a uniform random score (the baseline; no model)."""
    units: list[Unit] = []
    if level == "image":
        free = np.flatnonzero(~state.image_queried())
        scores = random_scores(len(free), generator).tolist()
        return [Unit(int(i), -1, pool.pixels_per_image, s) for i, s in zip(free, scores,
                                                                           strict=True)]
    assert pool.regions is not None and pool.num_regions is not None
    for i in range(len(pool)):
        r = int(pool.num_regions[i])
        pixels = np.bincount(pool.regions[i].ravel(), minlength=r)
        done = np.bincount(pool.regions[i].ravel(), weights=state.queried[i].ravel(),
                           minlength=r) > 0
        scores = random_scores(r, generator).tolist()
        units += [Unit(i, rid, int(pixels[rid]), scores[rid]) for rid in range(r)
                  if not done[rid]]
    return units


@dataclass
class PoolScan:
    """One pass of the model over the pool: candidate ``units`` (unqueried images or regions,
    raw scores), and per pool image (labelled ones included): ``features`` (N, D) float32
    pooled penultimate features, ``class_fractions`` (N, C) float32 predicted class shares,
    ``gradients`` (N, C * D) float32 BADGE embeddings (or None where not asked for)."""

    units: list[Unit]
    features: torch.Tensor | None = None
    class_fractions: torch.Tensor | None = None
    gradients: torch.Tensor | None = None


def score_pool(model: nn.Module | None, pool: Pool, state: LabelState, strategy: str,
               level: str, device: torch.device, *, round_number: int, seed: int,
               batch_size: int = 32, mc_samples: int = 8, table_path: Path | None = None,
               progress: bool = True) -> list[Unit]:
    """Candidate units (unlabelled images or regions) with their acquisition scores.

    Image level scores each unqueried image (``image_scores``: for "uig" the thesis' UIG of
    the image-averaged softmax); region level scores each unqueried region by the mean
    per-pixel score inside it. ``pred_class`` is the dominant predicted class (for
    class-balanced selection). With ``table_path`` every score is written to a ``scores``
    Parquet table (atomically).
    """
    scan = scan_pool(model, pool, state, strategy, level, device, round_number=round_number,
                     seed=seed, batch_size=batch_size, mc_samples=mc_samples,
                     progress=progress)
    if table_path is not None:
        write_scores(table_path, [score_row(round_number, pool, u, strategy) for u in scan.units])
    return scan.units


def write_scores(path: Path, rows: Iterable[dict[str, object]], chunk: int = 65_536) -> None:
    """Write a round's ``scores`` table atomically (one row per candidate unit), ``chunk``
    rows at a time (``rows`` may be a generator: the table is never all in memory)."""
    writer = TableWriter(str(path), SCORES)
    try:
        it = iter(rows)
        while part := list(itertools.islice(it, chunk)):
            writer.write_rows(part)
        writer.close()
    except BaseException:
        writer.abort()
        raise


def scan_pool(model: nn.Module | None, pool: Pool, state: LabelState, strategy: str,
              level: str, device: torch.device, *, round_number: int, seed: int,
              batch_size: int = 32, mc_samples: int = 8, features: bool = False,
              gradients: bool = False, progress: bool = True,
              shard_images: int | None = None) -> PoolScan:
    """Score every unqueried unit; with ``features`` / ``gradients`` also keep every pool
    image's features, predicted class shares and BADGE embeddings (same forward pass).

    The pool is scanned in shards of ``shard_images`` images (one shard if None), exactly as
    the flow's mapped scoring tasks do (:func:`scan_range`, :func:`merge_scans`), so both
    give the same scan."""
    ranges = shard_ranges(len(pool), shard_images or max(1, len(pool)))
    parts = [scan_range(model, pool, state, strategy, level, device, start, stop,
                        round_number=round_number, seed=seed, batch_size=batch_size,
                        mc_samples=mc_samples, features=features, gradients=gradients,
                        progress=progress) for start, stop in ranges]
    return merge_scans(parts, pool, state, strategy, level, round_number=round_number,
                       seed=seed)


def shard_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) image ranges of at most ``size`` images covering 0..n."""
    if size < 1:
        raise ValueError(f"shard size must be >= 1, got {size}")
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def scan_range(model: nn.Module | None, pool: Pool, state: LabelState, strategy: str,
               level: str, device: torch.device, start: int, stop: int, *,
               round_number: int, seed: int, batch_size: int = 32, mc_samples: int = 8,
               features: bool = False, gradients: bool = False,
               progress: bool = True) -> PoolScan:
    """:func:`scan_pool` over pool images ``start:stop`` only (one mapped task's share):
    units with absolute image indices, per-image arrays for those rows. Random strategies
    get their units in :func:`merge_scans` (one generator over the whole pool)."""
    check_strategy(strategy)
    kind = STRATEGIES[strategy].kind
    if kind == "random" and not features:
        return PoolScan([])
    if model is None:
        raise ValueError(f"strategy {strategy!r} needs a trained model")
    return _scan_with_model(model, pool, state, strategy, level, device, round_number, seed,
                            batch_size, mc_samples, features or kind != "uncertainty",
                            gradients or kind == "badge", progress, start, stop)


def merge_scans(parts: list[PoolScan], pool: Pool, state: LabelState, strategy: str,
                level: str, *, round_number: int, seed: int) -> PoolScan:
    """Join shard scans (in pool order) into the scan of the whole pool."""
    units = [u for p in parts for u in p.units]
    if STRATEGIES[strategy].kind == "random":  # the same draws with or without a model
        gen = torch.Generator().manual_seed(seed * 1_000_003 + round_number)
        units = candidate_units_random(pool, state, level, gen)

    def cat(name: str) -> torch.Tensor | None:
        xs = [getattr(p, name) for p in parts if getattr(p, name) is not None]
        return torch.cat(xs) if xs else None

    return PoolScan(units, cat("features"), cat("class_fractions"), cat("gradients"))


def _unit_scores(strategy: str, kind: str, probs: torch.Tensor, level: str) -> torch.Tensor:
    """Per image (B,) or per pixel (B, H, W) raw scores; entropy for the kinds without a
    score map of their own (BADGE and TypiClust record it as the uncertainty)."""
    name = strategy if kind == "uncertainty" else "entropy"
    if level == "image":
        return image_scores(name, probs)
    return pixel_scores(name, probs)


def _scan_with_model(model: nn.Module, pool: Pool, state: LabelState, strategy: str,
                     level: str, device: torch.device, round_number: int, seed: int,
                     batch_size: int, mc_samples: int, want_features: bool,
                     want_gradients: bool, progress: bool, start: int,
                     stop: int) -> PoolScan:
    info = STRATEGIES[strategy]
    needs_mc = info.needs_mc
    done_images = state.image_queried()
    num_classes = None
    feats: list[torch.Tensor] = []
    fracs: list[torch.Tensor] = []
    grads: list[torch.Tensor] = []
    units: list[Unit] = []
    bar = tqdm(total=stop - start, desc=f"scoring ({strategy})", unit="img",
               disable=not progress, leave=False)
    with ExitStack() as stack:
        cap = None
        if needs_mc:  # dropout draws seeded per shard: the same on any worker, in any order
            stack.enter_context(_MC_LOCK)
            stack.enter_context(torch.random.fork_rng(devices=[]))
            torch.manual_seed(seed * 1_000_003 + round_number * 7_919 + start)
        if want_features or want_gradients:
            c_out = _num_classes(model, pool, device)
            cap = stack.enter_context(capture_features(model, c_out))
        stream = iter_probs(model, pool.arrays.images, device, batch_size,
                            mc_samples=mc_samples if needs_mc else 0, start=start, stop=stop)
        for sl, probs in stream:
            mean = probs.mean(0) if needs_mc else probs  # (B, C, H, W)
            num_classes = mean.shape[1]
            if cap is not None:
                assert cap.x is not None
                f = cap.x.cpu()
                feats.append(pooled(f))
                if want_gradients:
                    grads.append(gradient_embedding(mean, f))
            argmax = mean.argmax(1)
            fracs.append(torch.stack([torch.bincount(a.flatten(), minlength=num_classes)
                                      for a in argmax]).float() / argmax[0].numel())
            if info.kind != "random":
                units += _batch_units(info.kind, strategy, probs, mean, argmax, sl, pool,
                                      state, done_images, level)
            bar.update(sl.stop - sl.start)
    bar.close()
    return PoolScan(units, torch.cat(feats) if feats else None,
                    torch.cat(fracs) if fracs else None,
                    torch.cat(grads) if grads else None)


def _num_classes(model: nn.Module, pool: Pool, device: torch.device) -> int:
    with torch.no_grad():
        was = model.training
        model.eval()
        out = model(pool.arrays.images[:1].float().div(255.0).to(device))
        model.train(was)
    return int(out.shape[1])


def _batch_units(kind: str, strategy: str, probs: torch.Tensor, mean: torch.Tensor,
                 argmax: torch.Tensor, sl: slice, pool: Pool, state: LabelState,
                 done_images: np.ndarray, level: str) -> list[Unit]:
    batch: list[Unit] = []
    raw = _unit_scores(strategy, kind, probs, level)
    if level == "image":
        pred = mean.mean((2, 3)).argmax(1).tolist()
        scores = raw.tolist()
        for b, i in enumerate(range(sl.start, sl.stop)):
            if not done_images[i]:
                batch.append(Unit(i, -1, pool.pixels_per_image, scores[b], int(pred[b])))
        return batch
    assert pool.regions is not None and pool.num_regions is not None
    for b, i in enumerate(range(sl.start, sl.stop)):
        regions = torch.from_numpy(pool.regions[i]).long()
        r = int(pool.num_regions[i])
        valid = torch.from_numpy(~state.queried[i])
        s, pixels = region_scores(raw[b], regions, r, valid)
        maj = region_majority(argmax[b], regions, r, mean.shape[1])
        for rid in torch.nonzero(torch.isfinite(s)).flatten().tolist():
            batch.append(Unit(i, rid, int(pixels[rid]), float(s[rid]), int(maj[rid])))
    return batch
