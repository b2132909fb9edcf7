"""Tasks every flow starts with: where the data is, and the workspace."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from segloop import context
from segloop.config import Config
from segloop.tasks._retry import transient
from segloop.versioning import Workspace


@task(name="locate-data", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=transient)
def locate_data(cfg: Config) -> str:
    return context.resolve_data_root(cfg)


@task(name="open-workspace", cache_policy=NO_CACHE)
def open_workspace(cfg: Config) -> Workspace:
    return context.open_workspace(cfg)
