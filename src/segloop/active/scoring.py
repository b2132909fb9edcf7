"""Score the unlabelled pool, streaming in batches, into candidate units and a score table.

Memory stays flat as the pool grows: only one batch of probabilities exists at a time, and
every batch's scores go straight to a Parquet ``scores`` table (one per round).
"""

from __future__ import annotations

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
from segloop.active.pool import Pool
from segloop.active.selection import Unit
from segloop.active.state import LabelState
from segloop.data.parquet import TableWriter
from segloop.data.schemas import SCORES
from segloop.train.loop import iter_probs


def _row(round_number: int, pool: Pool, u: Unit, strategy: str) -> dict[str, object]:
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
    check_strategy(strategy)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + round_number)
    writer = TableWriter(str(table_path), SCORES) if table_path is not None else None
    try:
        if strategy == "random":
            units = candidate_units_random(pool, state, level, gen)
            if writer is not None:
                writer.write_rows([_row(round_number, pool, u, strategy) for u in units])
        else:
            if model is None:
                raise ValueError(f"strategy {strategy!r} needs a trained model")
            units = _score_with_model(model, pool, state, strategy, level, device, round_number,
                                      batch_size, mc_samples, writer, progress)
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return units


def _score_with_model(model: nn.Module, pool: Pool, state: LabelState, strategy: str,
                      level: str, device: torch.device, round_number: int, batch_size: int,
                      mc_samples: int, writer: TableWriter | None,
                      progress: bool) -> list[Unit]:
    needs_mc = STRATEGIES[strategy].needs_mc
    done_images = state.image_queried()
    units: list[Unit] = []
    stream = iter_probs(model, pool.arrays.images, device, batch_size,
                        mc_samples=mc_samples if needs_mc else 0)
    bar = tqdm(total=len(pool), desc=f"scoring ({strategy})", unit="img", disable=not progress,
               leave=False)
    for sl, probs in stream:
        mean = probs.mean(0) if needs_mc else probs  # (B, C, H, W)
        batch: list[Unit] = []
        if level == "image":
            scores = image_scores(strategy, probs).tolist()
            pred = mean.mean((2, 3)).argmax(1).tolist()
            for b, i in enumerate(range(sl.start, sl.stop)):
                if not done_images[i]:
                    batch.append(Unit(i, -1, pool.pixels_per_image, scores[b], int(pred[b])))
        else:
            assert pool.regions is not None and pool.num_regions is not None
            pix = pixel_scores(strategy, probs)
            argmax = mean.argmax(1)
            for b, i in enumerate(range(sl.start, sl.stop)):
                regions = torch.from_numpy(pool.regions[i]).long()
                r = int(pool.num_regions[i])
                valid = torch.from_numpy(~state.queried[i])
                s, pixels = region_scores(pix[b], regions, r, valid)
                maj = region_majority(argmax[b], regions, r, mean.shape[1])
                for rid in torch.nonzero(torch.isfinite(s)).flatten().tolist():
                    batch.append(Unit(i, rid, int(pixels[rid]), float(s[rid]), int(maj[rid])))
        if writer is not None and batch:
            writer.write_rows([_row(round_number, pool, u, strategy) for u in batch])
        units += batch
        bar.update(sl.stop - sl.start)
    bar.close()
    return units
