"""Prefect tasks of the pseudolabel flow: one library call each."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from segloop.config import Config
from segloop.pseudolabel import heads, label, plan, run, score
from segloop.versioning import RoundInfo, Workspace
from tasks._common import locate_data, open_workspace  # noqa: F401  (re-exported)
from tasks._retry import transient

# Every step reads or writes the staging folder or the workspace: never cached.


@task(name="plan-round", cache_policy=NO_CACHE)
def make_plan(cfg: Config, ws: Workspace) -> plan.PseudoPlan:
    return plan.plan(cfg, ws)


@task(name="train-usam-heads", cache_policy=NO_CACHE, tags=["gpu"], retries=1,
      retry_delay_seconds=10, retry_condition_fn=transient)
def train_heads(cfg: Config, p: plan.PseudoPlan) -> dict[str, Any]:
    return heads.train_heads(cfg, p)


@task(name="label-chunk", cache_policy=NO_CACHE, tags=["gpu"], retries=1,
      retry_delay_seconds=10, retry_condition_fn=transient)
def label_chunk(cfg: Config, p: plan.PseudoPlan, root: str, k: int) -> label.ChunkStats:
    return label.label_chunk(cfg, p, k, _scorer(cfg, p, root))


_SCORERS: dict[tuple[str, int], label.MaskScorer] = {}


def _scorer(cfg: Config, p: plan.PseudoPlan, root: str) -> label.MaskScorer:
    """One scorer (head or CLIP, text bank, dataset listing) per round in this process."""
    key = (p.fingerprint, p.round)
    if key not in _SCORERS:
        _SCORERS.clear()
        _SCORERS[key] = label.make_scorer(cfg, p, root)
    return _SCORERS[key]


@task(name="evaluate-round", cache_policy=NO_CACHE)
def evaluate(cfg: Config, p: plan.PseudoPlan, root: str) -> dict[str, Any] | None:
    return score.evaluate_round(cfg, p, label.target_dataset(cfg, root))


@task(name="commit-round", cache_policy=NO_CACHE, retries=1,
      retry_condition_fn=transient)
def commit(cfg: Config, ws: Workspace, p: plan.PseudoPlan, training: dict[str, Any] | None,
           metrics: dict[str, Any] | None) -> RoundInfo:
    return run.commit(cfg, ws, p, training, metrics)


@task(name="confirm-round", cache_policy=NO_CACHE)
def confirm(ws: Workspace, p: plan.PseudoPlan) -> dict[str, Any] | None:
    return run.confirm(ws, p)
