"""Prefect tasks of the synthesize flow: one library call each."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from segloop.config import Config
from segloop.synth import steps
from segloop.tasks._common import locate_data, open_workspace  # noqa: F401  (re-exported)
from segloop.tasks._retry import transient
from segloop.versioning import Workspace

# Every step reads or writes the dataset folder: never serve them from a cache.


@task(name="plan-chunks", cache_policy=NO_CACHE)
def plan(cfg: Config, out: str) -> steps.SynthPlan:
    return steps.plan(cfg, out)


@task(name="generate-chunk", cache_policy=NO_CACHE, tags=["gpu"], retries=1,
      retry_delay_seconds=10, retry_condition_fn=transient)
def generate_chunk(cfg: Config, out: str, chunk: steps.Chunk) -> steps.ChunkStats:
    return steps.generate_chunk(cfg, out, chunk)


@task(name="finalize-dataset", cache_policy=NO_CACHE)
def finalize(cfg: Config, out: str) -> dict:
    return steps.finalize(cfg, out)


@task(name="version-dataset", cache_policy=NO_CACHE, retries=1,
      retry_condition_fn=transient)
def version_output(cfg: Config, ws: Workspace, out: str, images: int) -> str:
    return steps.version_output(cfg, ws, out, images)
