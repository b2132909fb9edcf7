"""Prefect tasks of the active-learning loop: one library call each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from segloop.active import baseline, loop, pool, previews, report
from segloop.active.selection import Selection
from segloop.active.state import LabelState
from segloop.config import Config
from segloop.flows.events import emit_label_round
from segloop.tasks._retry import transient
from segloop.train.metrics import SegMetrics
from segloop.versioning import RoundInfo


# Every step reads or writes the workspace: never serve them from a cache.
@task(name="prepare-loop", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      retry_condition_fn=transient)
def prepare(cfg: Config) -> loop.ALContext:
    return loop.prepare(cfg)


@task(name="initial-selection", cache_policy=NO_CACHE)
def initial_selection(ctx: loop.ALContext) -> tuple[Selection, Path | None]:
    return loop.initial_selection(ctx)


@task(name="label-state", cache_policy=NO_CACHE)
def label_state(ctx: loop.ALContext, upto: int) -> LabelState:
    return loop.label_state(ctx, upto)


@task(name="plan-caches", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      retry_condition_fn=transient)
def plan_caches(cfg: Config) -> tuple[str, list[pool.CachePlan]]:
    return loop.plan_caches(cfg)


@task(name="cache-shard", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      retry_condition_fn=transient)
def cache_shard(cfg: Config, root: str, plan: pool.CachePlan, shard: int) -> int:
    return pool.write_split_shard(cfg, root, plan, shard)


# Tasks that may run on any worker (runner: dask) take the config and round numbers and
# hand back references (checkpoint and scan paths) or small records, never models or pools.


@dataclass(frozen=True)
class TrainedRound:
    """The model of rounds 0..k: its checkpoint and the seconds its training took."""

    checkpoint: str
    seconds: float


@task(name="train", cache_policy=NO_CACHE, tags=["gpu"])
def train(cfg: Config, k: int) -> TrainedRound:
    ctx = loop.open_context(cfg)
    _, seconds = loop.train_after(ctx, k, loop.label_state(ctx, k))
    return TrainedRound(str(ctx.model_path(k)), seconds)


@task(name="evaluate", cache_policy=NO_CACHE, tags=["gpu"])
def evaluate(cfg: Config, k: int) -> SegMetrics:
    ctx = loop.open_context(cfg)
    return loop.evaluate_model(ctx, loop.load_model(ctx, k))


@task(name="random-baseline", cache_policy=NO_CACHE, tags=["gpu"])
def random_baseline(cfg: Config, k: int) -> dict:
    ctx = loop.open_context(cfg)
    return baseline.random_baseline(ctx, k, loop.label_state(ctx, k), progress=False)


@task(name="score-shard", cache_policy=NO_CACHE, tags=["gpu"])
def score_shard(cfg: Config, n: int, start: int, stop: int) -> str:
    return str(loop.score_shard(loop.open_context(cfg), n, start, stop))


# Tasks of the flow's own process: they read and write the workspace (one writer).


@task(name="record-metrics", cache_policy=NO_CACHE)
def record_metrics(ctx: loop.ALContext, k: int, state: LabelState, metrics: SegMetrics,
                   extra: dict) -> dict:
    return loop.record_metrics(ctx, k, state, metrics, extra)


@task(name="select", cache_policy=NO_CACHE)
def select(ctx: loop.ALContext, state: LabelState, n: int, scans: list[str],
           started: float) -> tuple[Selection, Path, float]:
    return loop.select_from_shards(ctx, state, n, [Path(p) for p in scans], started)


@task(name="simulate-labels", cache_policy=NO_CACHE)
def simulate_labels(ctx: loop.ALContext, selection: Selection) -> dict[int, np.ndarray]:
    return loop.simulate_labels(ctx, selection)


@task(name="commit-round", cache_policy=NO_CACHE, retries=1,
      retry_condition_fn=transient)
def commit_labels(ctx: loop.ALContext, n: int, selection: Selection,
                  labels: dict[int, np.ndarray], strategy: str, annotator: str,
                  scores: Path | None) -> RoundInfo:
    info = loop.commit_labels(ctx, n, selection, labels, strategy, annotator, scores)
    if info.created:  # a trigger may start work on a new round (prefect.yaml)
        emit_label_round(ctx.ws.root, n, info.tag, info.commit, annotator)
    return info


@task(name="fiftyone-export", cache_policy=NO_CACHE)
def fiftyone_export(ctx: loop.ALContext) -> tuple[str, str]:
    """The workspace's FiftyOne dataset updated (``tracking.fiftyone``): its name and the
    App's URL of it. The database this started is stopped again."""
    from segloop.tracking.fiftyone_app import dataset_url
    from segloop.tracking.fiftyone_db import stop_database
    from segloop.tracking.fiftyone_workspace import export_workspace

    try:
        done = export_workspace(ctx)
    finally:
        stop_database()
    get_run_logger().info("FiftyOne dataset %s: %d samples (%d added) in %.1f s; written: %s",
                          done.dataset, done.samples, done.added, done.seconds, done.written())
    return done.dataset, dataset_url(ctx.cfg, done.dataset)


@task(name="preview-selection", cache_policy=NO_CACHE)
def preview_selection(ctx: loop.ALContext, n: int, selection: Selection) -> Path:
    """Round ``n``'s picks outlined on their images (PNG in the reports folder)."""
    return previews.write_round_preview(ctx, n, selection,
                                        report.selection_preview_path(ctx.cfg, n))
