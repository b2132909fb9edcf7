"""``runner: dask``: the active-learning flow on a real 2-worker Dask LocalCluster gives the
rounds the thread runner gives, and its mapped tasks really ran on the Dask workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segloop.config import parse_config

from .test_active_learning_flow import _rounds, al_config


def _says(text: str, *parts: str) -> bool:
    return all(p in text for p in parts)


def _metrics(result) -> list[tuple[int, float, int]]:  # type: ignore[no-untyped-def]
    return [(r["round"], r["miou"], r["labelled_images"]) for r in result.rounds]


def test_dask_local_cluster_gives_the_threads_rounds(prefect_harness: None, camvid_root: Path,
                                                    tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    from segloop.flows.active_learning import active_learning_flow

    # 3 scoring shards of <= 4 images each; gpu-tagged tasks ask for the GPU resource
    shards = {"score_shard_images": 4}
    threads = al_config(tmp_path, camvid_root, "threads", rounds=1)
    threads = threads.model_copy(update={"runner": parse_config({"runner": shards}).runner})
    # Dask workers run torch on one thread (OMP_NUM_THREADS=1): so does the thread run here,
    # so that both compute the same floats
    was = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = active_learning_flow(config=threads)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          resources={"GPU": 1}, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            dask = al_config(tmp_path, camvid_root, "dask", rounds=1)
            runner = {"kind": "dask", "address": cluster.scheduler_address,
                      "gpu_resource": "GPU", **shards}
            dask = dask.model_copy(update={"runner": parse_config({"runner": runner}).runner})
            b = active_learning_flow(config=dask)
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    finally:
        torch.set_num_threads(was)
    assert a.status == b.status == "complete"
    ra, rb = _rounds(tmp_path / "threads/ws"), _rounds(tmp_path / "dask/ws")
    assert len(ra) == 2 and [r["units"] for r in ra] == [r["units"] for r in rb]
    assert [r["labels"] for r in ra] == [r["labels"] for r in rb]
    assert _metrics(a) == _metrics(b)
    # on the workers: 2 cache shards (pool, evaluation split), train x2, evaluate x2,
    # 3 score shards (both workers took some)
    assert sum(executed.values()) == 9 and len(executed) == 2
    scans = sorted(p.name for p in (tmp_path / "dask/ws/work/round_001/scan").rglob("*.npz"))
    assert scans == ["shard_00000000_00000004.npz", "shard_00000004_00000008.npz",
                     "shard_00000008_00000010.npz"]


def test_runner_config_errors_name_the_key() -> None:
    from segloop.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config({"runner": {"kind": "ray"}})
    assert _says(str(err.value), "runner", "ray", "not implemented", "threads")
    with pytest.raises(ConfigError) as err:
        parse_config({"runner": {"address": "tcp://scheduler:8786"}})
    assert _says(str(err.value), "runner.address", "kind: dask")
    with pytest.raises(ConfigError) as err:
        parse_config({"runner": {"kind": "dask", "address": "tcp://s:8786",
                                 "worker_resources": {"GPU": 1}}})
    assert _says(str(err.value), "worker_resources", "--resources GPU=1")


def test_build_runner_settings() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from segloop.flows.task_runner import build_runner

    cfg = parse_config({"runner": {"max_workers": 3}}).runner
    threads = build_runner(cfg)
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    cfg = parse_config({"runner": {"kind": "dask", "n_workers": 3,
                                   "worker_resources": {"GPU": 1}}}).runner
    local = build_runner(cfg)
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs["n_workers"] == 3
    assert local.cluster_kwargs["resources"] == {"GPU": 1}
    remote = build_runner(parse_config({"runner": {"kind": "dask",
                                                   "address": "tcp://s:8786"}}).runner)
    assert remote.address == "tcp://s:8786" and not remote.cluster_kwargs
