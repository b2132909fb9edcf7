"""Prefect tasks of the pseudolabel flow: one library call each."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from segloop.config import Config
from segloop.pseudolabel import (
    cluster_seeds,
    finish,
    heads,
    image_label,
    mask_label,
    plan,
    refine,
    round_report,
)
from segloop.tasks._common import locate_data, open_workspace  # noqa: F401  (re-exported)
from segloop.tasks._retry import transient
from segloop.versioning import RoundInfo, Workspace

# Every step reads or writes the staging folder or the workspace: never cached.


@task(name="plan-round", cache_policy=NO_CACHE)
def make_plan(cfg: Config, ws: Workspace, root: str) -> plan.PseudoPlan:
    if cfg.pseudolabel.method == "clusters":
        needs_images = cfg.pseudolabel.clusters.features != "sam"
        return cluster_seeds.plan_clusters(
            cfg, ws, mask_label.target_dataset(cfg, root) if needs_images else None)
    images = cfg.pseudolabel.method in plan.IMAGE_METHODS
    return plan.plan(cfg, ws, mask_label.target_dataset(cfg, root) if images else None)


@task(name="train-usam-heads", cache_policy=NO_CACHE, tags=["gpu"], retries=1,
      retry_delay_seconds=10, retry_condition_fn=transient)
def train_heads(cfg: Config, p: plan.PseudoPlan) -> dict[str, Any]:
    return heads.train_heads(cfg, p)


@task(name="label-chunk", cache_policy=NO_CACHE, tags=["gpu"], retries=1,
      retry_delay_seconds=10, retry_condition_fn=transient)
def label_chunk(cfg: Config, p: plan.PseudoPlan, root: str, k: int) -> mask_label.ChunkStats:
    if p.method == "clusters":
        needs_images = cfg.pseudolabel.clusters.features != "sam"
        worker = _per_round(p, lambda: cluster_seeds.make_worker(
            cfg, p, mask_label.target_dataset(cfg, root) if needs_images else None))
        return cluster_seeds.cluster_chunk(p, k, worker)
    if p.method in plan.IMAGE_METHODS:
        images = _per_round(p, lambda: image_label.make_worker(
            cfg, p, mask_label.target_dataset(cfg, root)))
        return image_label.label_image_chunk(p, k, images.segmenter, images.targets,
                                             image_label.abstain_below(cfg))
    scorer = _per_round(p, lambda: mask_label.make_scorer(cfg, p, root))
    return mask_label.label_chunk(cfg, p, k, scorer)


_WORKERS: dict[tuple[str, int], Any] = {}
_WORKERS_LOCK = threading.Lock()


def _per_round(p: plan.PseudoPlan, make: Callable[[], Any]) -> Any:
    """What labels a round's chunks (a head or CLIP with its text bank, a loaded diffusion
    pipeline, a dataset listing), made once per round in this process."""
    key = (p.fingerprint, p.round)
    with _WORKERS_LOCK:  # a Dask worker may run chunks in several threads
        if key not in _WORKERS:
            _WORKERS.clear()
            _WORKERS[key] = make()
        return _WORKERS[key]


@task(name="plan-refinement", cache_policy=NO_CACHE)
def plan_refinement(cfg: Config, ws: Workspace, root: str, rel: str) -> plan.PseudoPlan:
    return refine.plan_refinement(cfg, ws, mask_label.target_dataset(cfg, root), rel)


@task(name="refine-chunk", cache_policy=NO_CACHE, tags=["gpu"], retries=1,
      retry_delay_seconds=10, retry_condition_fn=transient)
def refine_chunk(cfg: Config, p: plan.PseudoPlan, ws: Workspace, root: str, k: int
                 ) -> mask_label.ChunkStats:
    refiner = _per_round(p, lambda: refine.make_refiner(
        cfg, p, mask_label.target_dataset(cfg, root), ws.root))
    return refine.refine_chunk(p, k, refiner)


@task(name="evaluate-round", cache_policy=NO_CACHE)
def evaluate(cfg: Config, p: plan.PseudoPlan, root: str) -> dict[str, Any] | None:
    return round_report.evaluate_round(cfg, p, mask_label.target_dataset(cfg, root))


@task(name="commit-round", cache_policy=NO_CACHE, retries=1,
      retry_condition_fn=transient)
def commit(cfg: Config, ws: Workspace, p: plan.PseudoPlan, training: dict[str, Any] | None,
           metrics: dict[str, Any] | None) -> RoundInfo:
    return finish.commit(cfg, ws, p, training, metrics)


@task(name="confirm-round", cache_policy=NO_CACHE)
def confirm(ws: Workspace, p: plan.PseudoPlan) -> dict[str, Any] | None:
    return finish.confirm(ws, p)
