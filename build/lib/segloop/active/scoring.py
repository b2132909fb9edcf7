"""Score the unlabelled pool, streaming in batches, into candidate units and a score table.

Memory stays flat in the pool's pixels: only one batch of probabilities exists at a time;
what is kept per image is small (a score per unit, a pooled feature vector, class shares).
The round's ``scores`` table (one row per candidate unit, with why it was or was not
picked) is written once the units are chosen (:mod:`segloop.active.choose`).
"""

from __future__ import annotations

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


def write_scores(path: Path, rows: list[dict[str, object]]) -> None:
    """Write a round's ``scores`` table atomically (one row per candidate unit)."""
    writer = TableWriter(str(path), SCORES)
    try:
        writer.write_rows(rows)
        writer.close()
    except BaseException:
        writer.abort()
        raise


def scan_pool(model: nn.Module | None, pool: Pool, state: LabelState, strategy: str,
              level: str, device: torch.device, *, round_number: int, seed: int,
              batch_size: int = 32, mc_samples: int = 8, features: bool = False,
              gradients: bool = False, progress: bool = True) -> PoolScan:
    """Score every unqueried unit; with ``features`` / ``gradients`` also keep every pool
    image's features, predicted class shares and BADGE embeddings (same forward pass)."""
    check_strategy(strategy)
    kind = STRATEGIES[strategy].kind
    if kind == "random" and not features:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + round_number)
        return PoolScan(candidate_units_random(pool, state, level, gen))
    if model is None:
        raise ValueError(f"strategy {strategy!r} needs a trained model")
    return _scan_with_model(model, pool, state, strategy, level, device, round_number, seed,
                            batch_size, mc_samples, features or kind != "uncertainty",
                            gradients or kind == "badge", progress)


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
                     want_gradients: bool, progress: bool) -> PoolScan:
    info = STRATEGIES[strategy]
    needs_mc = info.needs_mc
    done_images = state.image_queried()
    gen = torch.Generator().manual_seed(seed * 1_000_003 + round_number)
    num_classes = None
    feats: list[torch.Tensor] = []
    fracs: list[torch.Tensor] = []
    grads: list[torch.Tensor] = []
    units: list[Unit] = []
    bar = tqdm(total=len(pool), desc=f"scoring ({strategy})", unit="img", disable=not progress,
               leave=False)
    with ExitStack() as stack:
        cap = None
        if want_features or want_gradients:
            c_out = _num_classes(model, pool, device)
            cap = stack.enter_context(capture_features(model, c_out))
        stream = iter_probs(model, pool.arrays.images, device, batch_size,
                            mc_samples=mc_samples if needs_mc else 0)
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
    if info.kind == "random":  # the same draws as without a model
        units = candidate_units_random(pool, state, level, gen)
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
