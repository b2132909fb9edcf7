"""One round's training and one round's selection, apart from any workspace.

The loop (:mod:`segloop.active.loop`) wraps these with checkpoints, versioning and score
tables; the CamVid benchmark calls them directly, so both run the same code.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
from torch import nn

from segloop.active.acquisition import STRATEGIES
from segloop.active.choose import Choice, choose
from segloop.active.features import thumbnails
from segloop.active.grow import region_grower
from segloop.active.pool import Pool
from segloop.active.scoring import PoolScan, candidate_units_random, scan_pool
from segloop.active.selection import Budget
from segloop.active.state import LabelState
from segloop.config import ActiveConfig, Config
from segloop.data.image_maps import ImageMaps
from segloop.train.factory import build_from_config, class_weights, semi_settings, train_settings
from segloop.train.loop import train_model


def fit_round(pool: Pool, state: LabelState, labels: ImageMaps, cfg: Config, seed: int,
              device: torch.device, *, init: nn.Module | None = None, progress: bool = True,
              desc: str = "training", losses: list[float] | None = None
              ) -> tuple[nn.Module, float]:
    """Train a model on ``labels`` (N, H, W) uint8 :class:`ImageMaps` (the round's human
    labels, plus seeds):
    built with ``seed`` (or starting from ``init``'s weights with
    ``active.warm_start_steps`` steps), with ``train.semi`` on the pool and, at region
    level, ``active.region.grow``. Returns the model and its training seconds; the loss of
    every step is appended to ``losses`` when given."""
    tc, ac = cfg.train, cfg.active
    c = cfg.data.classes.num_classes
    ignore = cfg.data.classes.ignore_index
    torch.manual_seed(seed)  # weight init, then train_model reseeds for batches
    model = build_from_config(tc, c)
    steps = tc.steps
    if init is not None:
        model.load_state_dict(init.state_dict())
        steps = ac.warm_start_steps or tc.steps
    target = labels
    weights = class_weights(tc, target, c, ignore)
    settings = replace(train_settings(tc, seed, weights), steps=steps)
    refresh, at = None, ()
    if ac.level == "region" and ac.region.grow and pool.regions is not None:
        refresh = region_grower(pool, state, labels, ac.region, ignore, device,
                                tc.eval_batch_size)
        at = ac.region.grow_at
    start = time.perf_counter()
    curve = train_model(model, pool.arrays.images, target, settings, ignore, device,
                        progress=progress, desc=desc, semi=semi_settings(tc), refresh=refresh,
                        refresh_at=at)
    if losses is not None:
        losses.extend(curve)
    return model, time.perf_counter() - start


def needs_features(ac: ActiveConfig) -> bool:
    """Whether selection uses image features / class shares beyond the scores (random
    selection never does: it needs no model at all)."""
    if STRATEGIES[ac.strategy].kind == "random":
        return False
    return (ac.diversity != "none" or ac.dedup_similarity is not None
            or ac.class_balance == "rarity")


def select_round(model: nn.Module, pool: Pool, state: LabelState, cfg: Config,
                 budget: Budget, n: int, device: torch.device,
                 progress: bool = True) -> tuple[Choice, PoolScan, float]:
    """Scan the pool with round ``n``'s model (in ``runner.score_shard_images`` shards, as
    the flow's mapped tasks do) and choose its units; also the seconds that scanning plus
    choosing took."""
    ac = cfg.active
    start = time.perf_counter()
    scan = scan_pool(model, pool, state, ac.strategy, ac.level, device, round_number=n,
                     seed=cfg.base.seed, batch_size=cfg.train.eval_batch_size,
                     mc_samples=ac.mc_samples, features=needs_features(ac), progress=progress,
                     shard_images=cfg.runner.score_shard_images)
    gen = torch.Generator().manual_seed(cfg.base.seed * 1_000_003 + n)
    choice = choose(scan, pool, state, ac, budget, gen)
    return choice, scan, time.perf_counter() - start


def initial_choice(pool: Pool, state: LabelState, cfg: Config, budget: Budget) -> Choice:
    """Round 0 (no model): random units, or TypiClust on image thumbnails."""
    ac = cfg.active
    gen = torch.Generator().manual_seed(cfg.base.seed * 1_000_003)
    units = candidate_units_random(pool, state, ac.level, gen)
    scan = PoolScan(units, features=thumbnails(pool.arrays.images)
                    if ac.initial_strategy == "typiclust" else None)
    return choose(scan, pool, state, ac, budget, gen, strategy=ac.initial_strategy)
