"""prefect.yaml as a team uses it: `prefect deploy` to a real local Prefect server, one run
through a process worker, and the deployment triggers firing on the events they wait for."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED = ("smoke-nightly", "active-learning-after-labels", "pseudolabel-after-embed")


def _prefect(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


async def _client_call(fn: Any) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await fn(client)


def _call(fn: Any) -> Any:
    return asyncio.run(_client_call(fn))


def _runs_of(deployment_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    flt = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    return _call(lambda c: c.read_flow_runs(deployment_filter=flt))


def _wait_for_run(deployment_id: Any, seconds: float = 90) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs = _runs_of(deployment_id)
        if runs:
            return runs[0]
        time.sleep(1)
    raise AssertionError(f"no flow run of deployment {deployment_id} within {seconds} s")


def test_deploy_run_through_a_worker_and_triggers_fire(
    prefect_harness: None, camvid_root: Path, tmp_path: Path
) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    from segloop.flows.events import emit_label_round

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "PREFECT_CLI_PROMPT": "false", "OMP_NUM_THREADS": "1"}
    pipeline = tmp_path / "smoke.yaml"
    pipeline.write_text(yaml.safe_dump({
        "base": {"seed": 3, "paths": {"workspace": str(tmp_path / "ws"),
                                      "dvc_remote": str(tmp_path / "remote"),
                                      "reports": str(tmp_path / "reports")}},
        "data": {"root": str(camvid_root), "split": "train"},
        "smoke": {"n_images": 4, "label_fraction": 0.25}}))

    # the pools as the README creates them (the GPU pool's Docker type needs prefect-docker,
    # which a CPU test machine does not have: same name, no job template)
    _prefect(env, "work-pool", "create", "segloop-cpu", "--type", "process")
    _call(lambda c: c.create_work_pool(WorkPoolCreate(name="segloop-gpu", type="docker")))
    # (`--param` applies when one deployment is deployed: the smoke run uses the tiny data)
    _prefect(env, "--no-prompt", "deploy", "--name", DEPLOYED[0], "--param",
             f"pipeline={pipeline}")
    _prefect(env, "--no-prompt", "deploy", *[a for n in DEPLOYED[1:] for a in ("--name", n)])

    spec = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())
            ["deployments"]}
    deployments = {}
    for name, flow in (("smoke-nightly", "smoke"), ("active-learning-after-labels",
                                                    "active_learning"),
                       ("pseudolabel-after-embed", "pseudolabel")):
        dep = _call(lambda c, n=f"{flow}/{name}": c.read_deployment_by_name(n))
        deployments[name] = dep
        limit = spec[name]["concurrency_limit"]
        assert dep.global_concurrency_limit.limit == limit["limit"] == 1
        assert dep.concurrency_options.collision_strategy.value == limit["collision_strategy"]
    assert [s.schedule.cron for s in deployments["smoke-nightly"].schedules] == ["0 2 * * *"]

    # one run of the smoke deployment through a process worker, as a nightly run would go
    smoke = deployments["smoke-nightly"]
    assert smoke.parameters == {"pipeline": str(pipeline)}
    run = _call(lambda c: c.create_flow_run_from_deployment(smoke.id))
    _prefect(env, "worker", "start", "--pool", "segloop-cpu", "--type", "process",
             "--run-once", timeout=400)
    done = _call(lambda c: c.read_flow_run(run.id))
    assert done.state.is_completed(), done.state
    tags = subprocess.run(["git", "tag", "--list"], cwd=tmp_path / "ws", text=True,
                          capture_output=True, check=True).stdout.split()
    assert tags == ["labels/r000"]

    # a label round committed by people (`segloop labels import`) starts the next round
    al = deployments["active-learning-after-labels"]
    assert _runs_of(al.id) == []
    emit_label_round(tmp_path / "ws", 1, "labels/r001", "0" * 40, "exact")  # simulated
    time.sleep(5)
    assert _runs_of(al.id) == []  # the trigger waits for people's labels only
    emit_label_round(tmp_path / "ws", 1, "labels/r001", "0" * 40, "human")
    assert _wait_for_run(al.id).deployment_id == al.id

    # a completed run of the embed deployment starts pseudolabel
    from prefect.events import emit_event

    pseudo = deployments["pseudolabel-after-embed"]
    emit_event(event="prefect.flow-run.Completed",
               resource={"prefect.resource.id": f"prefect.flow-run.{uuid.uuid4()}"},
               related=[{"prefect.resource.id": f"prefect.deployment.{uuid.uuid4()}",
                         "prefect.resource.role": "deployment",
                         "prefect.resource.name": "embed-camvid-nightly"}])
    assert _wait_for_run(pseudo.id).deployment_id == pseudo.id


@pytest.mark.parametrize("name", ["Dockerfile", ".dockerignore"])
def test_the_gpu_image_files_exist_and_copy_what_the_flows_need(name: str) -> None:
    text = (ROOT / name).read_text()
    if name == "Dockerfile":
        for part in ("src", "flows", "tasks", "pipelines", "prefect.yaml"):
            assert f"COPY {part}" in text or f" {part} " in text, part
    else:
        assert ".venv" in text and ".segloop" in text
