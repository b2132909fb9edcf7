"""Task tags on the task runner: a tag without a concurrency limit on Prefect's server is left
off the task runs (each tagged start would ask the server for slots, and meet a locked
SQLite database right after the previous task ends); a limited tag stays and is enforced."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import TaskRunContext

from segloop.config import RunnerConfig
from segloop.flows.task_runner import tag_has_limit, task_runner


def _tags_seen(tag: str) -> list[set[str]]:
    @task(cache_policy=NO_CACHE, tags=[tag])
    def tagged(i: int) -> set[str]:
        ctx = TaskRunContext.get()
        assert ctx is not None
        get_run_logger().info("task %d", i)
        return set(ctx.task_run.tags)

    @flow
    def two_tagged() -> list[Any]:
        with task_runner(RunnerConfig()) as run:
            first = run.submit(tagged, i=0).result()
            return [first, run.call(tagged, i=1)]

    return two_tagged()


def test_unlimited_tag_is_left_off_and_a_limited_one_stays(prefect_harness: None) -> None:
    tag = f"segloop-test-{uuid.uuid4().hex[:8]}"
    assert not tag_has_limit(tag)
    assert _tags_seen(tag) == [set(), set()]  # submitted and called: no tag, no slot request
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=tag, concurrency_limit=2)
        try:
            assert tag_has_limit(tag)
            assert _tags_seen(tag) == [{tag}, {tag}]  # the limit applies to them
        finally:
            client.delete_concurrency_limit_by_tag(tag)
    assert not tag_has_limit(tag)


def test_the_runner_keeps_the_declared_tags_for_dask_resources() -> None:
    from segloop.flows.task_runner import FlowTasks

    @task(tags=["gpu"])
    def gpu_task() -> None:
        return None

    runs = FlowTasks(RunnerConfig(kind="dask", gpu_resource="GPU"), runner=None)  # type: ignore[arg-type]
    runs._limited["gpu"] = False  # as a server without a `gpu` limit answers
    assert runs.orchestrated(gpu_task).tags == set()
    assert runs.orchestrated(gpu_task) is runs.orchestrated(gpu_task)  # made once
    assert gpu_task.tags == {"gpu"}  # the declared task is untouched: it still asks Dask
    assert not isinstance(runs._resources(gpu_task), contextlib.nullcontext)
