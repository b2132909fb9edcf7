"""The task runner the config names (``runner``) for a flow's mapped work.

A flow opens it once (``with task_runner(cfg.runner) as run:``) and submits its mapped
tasks there: embed shards, synthesize chunks, pool scoring by shard, training and
evaluation of the active-learning loop. ``threads`` is Prefect's ``ThreadPoolTaskRunner``
in this process; ``dask`` is prefect-dask's ``DaskTaskRunner`` on a ``LocalCluster`` it
starts (``runner.n_workers`` processes) or on the cluster at ``runner.address``. Either way
the tasks are Prefect task runs of the flow run (states, retries, logs in the UI).

GPU work: tasks tagged ``gpu`` ask the Dask scheduler for one unit of
``runner.gpu_resource`` (e.g. ``GPU``); start one Dask worker per GPU declaring it
(``CUDA_VISIBLE_DEVICES=0 dask worker tcp://scheduler:8786 --nthreads 1 --resources GPU=1``,
and so on per device) and CPU-only workers without it: GPU tasks then run one per GPU, and
the rest anywhere.

Tags without a concurrency limit are left off the task runs: Prefect asks its server for a
tagged task's concurrency slots every time one starts, and on its SQLite database that
request, made just as the previous task's end is being recorded, meets a locked database
and is retried after 2 s: 2 s lost per task (5% of an 8-image synthesize chunk on a CPU).
Whether a tag has a limit (``prefect concurrency-limit create gpu 1``, or a global limit
named ``tag:gpu``) is asked once per tag and flow run; a limited tag stays on its tasks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.tasks import Task

from segloop.config import RunnerConfig


class FlowTasks:
    """Submit tasks to the configured runner: ``submit(task, **parameters)`` -> future."""

    def __init__(self, cfg: RunnerConfig, runner: TaskRunner[Any]) -> None:
        self.cfg = cfg
        self.runner = runner
        self._limited: dict[str, bool] = {}  # tag -> has a concurrency limit on the server
        self._as_run: dict[int, Task[..., Any]] = {}

    @property
    def kind(self) -> str:
        return self.cfg.kind

    def submit(self, task: Task[..., Any], **parameters: Any) -> PrefectFuture[Any]:
        """Run ``task(**parameters)`` on the runner (on a Dask worker with ``dask``); gpu-tagged
        tasks request one ``runner.gpu_resource`` there."""
        with self._resources(task):
            return self.runner.submit(self.orchestrated(task), parameters=parameters)

    def call(self, task: Task[..., Any], **parameters: Any) -> Any:
        """``task(**parameters)``'s result: in this thread on the thread runner (so Ctrl-C
        stops it at once, as it stops the flow), on a worker with ``dask``."""
        return self.call_all([(task, parameters)])[0]

    def call_all(self, calls: list[tuple[Task[..., Any], dict[str, Any]]]) -> list[Any]:
        """Results of several tasks: one after another in this thread on the thread runner,
        side by side on Dask workers."""
        if self.cfg.kind == "threads":
            return [self.orchestrated(task)(**parameters) for task, parameters in calls]
        futures = [self.submit(task, **parameters) for task, parameters in calls]
        return [f.result() for f in futures]

    def orchestrated(self, task: Task[..., Any]) -> Task[..., Any]:
        """``task`` as Prefect runs it: without its tags that have no concurrency limit on
        the server (the module's docstring says why). The tags still decide Dask resources."""
        if not task.tags:
            return task
        kept = {tag for tag in task.tags if self._has_limit(tag)}
        if kept == task.tags:
            return task
        if id(task) not in self._as_run:
            self._as_run[id(task)] = task.with_options(tags=kept)
        return self._as_run[id(task)]

    def _has_limit(self, tag: str) -> bool:
        if tag not in self._limited:
            self._limited[tag] = tag_has_limit(tag)
        return self._limited[tag]

    def _resources(self, task: Task[..., Any]) -> contextlib.AbstractContextManager[Any]:
        if self.cfg.kind != "dask" or not self.cfg.gpu_resource or "gpu" not in task.tags:
            return contextlib.nullcontext()
        import dask

        return dask.annotate(resources={self.cfg.gpu_resource: 1})


def tag_has_limit(tag: str) -> bool:
    """Whether Prefect's server holds a concurrency limit on task tag ``tag`` (a global limit
    named ``tag:<tag>``, or a tag limit of the older API). True when it cannot be asked:
    the tag then stays, and Prefect enforces whatever limit there is."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            try:
                client.read_global_concurrency_limit_by_name(f"tag:{tag}")
                return True
            except ObjectNotFound:
                pass
            try:
                client.read_concurrency_limit_by_tag(tag)
                return True
            except ObjectNotFound:
                return False
    except Exception:  # noqa: BLE001 - no answer: keep the tag, Prefect decides
        return True


def build_runner(cfg: RunnerConfig) -> TaskRunner[Any]:
    """The Prefect task runner for ``cfg`` (not started)."""
    if cfg.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=cfg.max_workers)
    if cfg.kind == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.address:
            return DaskTaskRunner(address=cfg.address)
        return DaskTaskRunner(cluster_kwargs={
            "n_workers": cfg.n_workers, "threads_per_worker": cfg.threads_per_worker,
            "processes": True, "resources": dict(cfg.worker_resources) or None,
            "dashboard_address": ":0"})
    raise ValueError(f"runner.kind {cfg.kind!r} is not implemented; use threads or dask")


@contextlib.contextmanager
def task_runner(cfg: RunnerConfig) -> Iterator[FlowTasks]:
    """Start the configured runner for the block (a Dask LocalCluster stops after it)."""
    with build_runner(cfg) as runner:
        yield FlowTasks(cfg, runner)
