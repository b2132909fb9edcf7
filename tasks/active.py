"""Prefect tasks of the active-learning loop: one library call each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from torch import nn

from segloop.active import baseline, loop
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


@task(name="train", cache_policy=NO_CACHE, tags=["gpu"])
def train(ctx: loop.ALContext, k: int, state: LabelState) -> tuple[nn.Module, float]:
    return loop.train_after(ctx, k, state)


@task(name="evaluate", cache_policy=NO_CACHE, tags=["gpu"])
def evaluate(ctx: loop.ALContext, model: nn.Module) -> SegMetrics:
    return loop.evaluate_model(ctx, model)


@task(name="record-metrics", cache_policy=NO_CACHE)
def record_metrics(ctx: loop.ALContext, k: int, state: LabelState, metrics: SegMetrics,
                   extra: dict) -> dict:
    return loop.record_metrics(ctx, k, state, metrics, extra)


@task(name="random-baseline", cache_policy=NO_CACHE, tags=["gpu"])
def random_baseline(ctx: loop.ALContext, k: int, state: LabelState) -> dict:
    return baseline.random_baseline(ctx, k, state)


@task(name="score-and-select", cache_policy=NO_CACHE, tags=["gpu"])
def score_and_select(ctx: loop.ALContext, model: nn.Module, state: LabelState,
                     n: int) -> tuple[Selection, Path, float]:
    return loop.score_and_select(ctx, model, state, n)


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
