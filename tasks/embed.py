"""Prefect tasks of the embed flow: one library call each."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from segloop.config import Config
from segloop.embed import steps
from segloop.tasks._common import locate_data, open_workspace  # noqa: F401  (re-exported)
from segloop.tasks._retry import transient
from segloop.versioning import Workspace

# Every step reads or writes the output folder: never serve them from a cache.


@task(name="plan-shards", cache_policy=NO_CACHE)
def plan(cfg: Config, root: str, out: str) -> steps.EmbedPlan:
    return steps.plan(cfg, steps.open_input(cfg, root), out)


@task(name="embed-shard", cache_policy=NO_CACHE, tags=["gpu"], retries=1,
      retry_delay_seconds=10, retry_condition_fn=transient)
def embed_shard(cfg: Config, out: str, shard: steps.ShardPlan) -> steps.ShardStats:
    return steps.embed_shard(cfg, out, shard)


@task(name="version-output", cache_policy=NO_CACHE, retries=1,
      retry_condition_fn=transient)
def version_output(cfg: Config, ws: Workspace, out: str, images: int,
                   source: str) -> str | None:
    return steps.version_output(cfg, ws, out, images, source)
