"""``runner``: where a flow's mapped tasks run (threads here, or a Dask cluster)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from segloop.config.section import Section


class RunnerConfig(Section):
    """The Prefect task runner of every flow's mapped work (embed shards, synthesize chunks,
    pseudo-label chunks, pool scoring by shard).

    ``threads`` runs tasks in this process's thread pool (the default: nothing to set up).
    ``dask`` runs them on a Dask cluster through prefect-dask's ``DaskTaskRunner``: a
    ``LocalCluster`` of ``n_workers`` processes it starts, or the existing cluster at
    ``address``. Tasks exchange references (URLs of shards, checkpoints, score tables), so
    every worker must reach the workspace and the data (a shared filesystem or object store).
    ``ray`` is reserved for prefect-ray with the same contract and is not implemented yet.
    """

    kind: Literal["threads", "dask", "ray"] = Field(
        "threads", description="threads (in-process), dask (prefect-dask DaskTaskRunner) or "
        "ray (reserved; not implemented yet).")
    max_workers: int | None = Field(
        None, ge=1, description="threads: the thread pool's size (None: Prefect's default).")
    address: str | None = Field(
        None, description="dask: the scheduler address of an existing cluster, e.g. "
        "'tcp://scheduler:8786' (its workers declare their own resources, e.g. "
        "`dask worker ... --resources GPU=1`); None starts a LocalCluster.")
    n_workers: int = Field(2, ge=1, description="dask LocalCluster: worker processes.")
    threads_per_worker: int = Field(1, ge=1, description="dask LocalCluster: threads each.")
    worker_resources: dict[str, float] = Field(
        default_factory=dict, description="dask LocalCluster: abstract resources every worker "
        "declares, e.g. {GPU: 1} for one worker per GPU (tasks tagged gpu then ask for one).")
    gpu_resource: str | None = Field(
        None, description="dask: the resource name gpu-tagged tasks request one unit of "
        "(e.g. 'GPU'); None: no resource requests.")
    score_shard_images: int = Field(
        1024, ge=1, description="images per pool-scoring task of the active-learning loop.")

    @model_validator(mode="after")
    def _consistent(self) -> RunnerConfig:
        if self.kind == "ray":
            raise ValueError(
                "runner.kind: 'ray' is reserved for prefect-ray and not implemented yet; use "
                "'threads' or 'dask'")
        if self.kind != "dask" and (self.address or self.worker_resources or self.gpu_resource):
            raise ValueError(
                "runner.address / worker_resources / gpu_resource apply to runner.kind: dask; "
                f"remove them or set kind: dask (kind is {self.kind!r})")
        if self.address and self.worker_resources:
            raise ValueError(
                "runner.worker_resources configures a LocalCluster segloop starts; with "
                "runner.address the cluster's workers declare their own resources "
                "(`dask worker --resources GPU=1`): remove runner.worker_resources")
        return self
