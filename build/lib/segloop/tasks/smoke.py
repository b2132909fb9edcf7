"""Prefect tasks of the smoke pipeline: one library call each."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from segloop import smoke
from segloop.config import Config
from segloop.tasks._common import locate_data, open_workspace  # noqa: F401  (re-exported)
from segloop.tasks._retry import transient
from segloop.versioning import RoundInfo, Workspace


# Every step writes to disk or to the workspace repo: never serve them from a cache.
@task(name="build-dataset", cache_policy=NO_CACHE)
def build_dataset(cfg: Config, root: str, dest: Path) -> int:
    return smoke.build_dataset(cfg, root, dest)


@task(name="version-dataset", cache_policy=NO_CACHE, retries=1,
      retry_condition_fn=transient)
def version_dataset(cfg: Config, ws: Workspace, dest: Path, n_images: int, source: str) -> str:
    return smoke.version_dataset(cfg, ws, dest, n_images, source)


@task(name="write-label-round", cache_policy=NO_CACHE, retries=1,
      retry_condition_fn=transient)
def write_round0(cfg: Config, ws: Workspace, dest: Path) -> RoundInfo:
    return smoke.write_round0(cfg, ws, dest)
