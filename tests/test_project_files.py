"""The project's own front-end files agree with the code: dvc.yaml, prefect.yaml, .ci/run."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from segloop.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_prefect_deployments_point_at_flows_that_accept_their_parameters() -> None:
    from prefect import Flow

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert spec["deployments"]
    for dep in spec["deployments"]:
        path, name = dep["entrypoint"].split(":")
        module = path.removesuffix(".py").replace("/", ".")
        flow = getattr(__import__(module, fromlist=[name]), name)
        assert isinstance(flow, Flow), dep["entrypoint"]
        accepted = inspect.signature(flow.fn).parameters
        assert set(dep.get("parameters", {})) <= set(accepted), dep["name"]
        if "pipeline" in dep.get("parameters", {}):
            load_config(ROOT / dep["parameters"]["pipeline"])


def test_dvc_stages_declare_existing_deps_and_known_params() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    outs = {next(iter(m)) for stage in stages.values() for m in stage.get("metrics", [])}
    for name, stage in stages.items():
        for dep in stage["deps"]:  # a file in the repo, or another stage's output
            assert (ROOT / dep).exists() or dep in outs, f"stage {name}: missing dep {dep}"
        for section in stage["params"]:
            node = params
            for key in section.split("."):  # DVC accepts dotted keys such as models.sam
                assert isinstance(node, dict) and key in node, (
                    f"stage {name}: unknown params key {section}")
                node = node[key]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_dvc_repro_smoke_in_a_fresh_project(tmp_path: Path, camvid_root: Path) -> None:
    """`dvc repro smoke` runs the flow as a DVC stage and records its metrics."""
    proj = tmp_path / "proj"
    proj.mkdir()
    for item in ("dvc.yaml", "src", "flows", "tasks"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, proj / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, proj / item)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["root"] = str(camvid_root)
    params["smoke"]["n_images"] = 4
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    subprocess.run([*dvc, "init", "-q"], cwd=proj, check=True, env=env)
    run = subprocess.run([*dvc, "repro", "smoke"], cwd=proj, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = yaml.safe_load((proj / "reports/smoke.json").read_text())
    assert report["n_images"] == 4 and report["labelled_images"] == 1
    assert (proj / ".segloop/workspace/data/labels/round_000.dvc").is_file()
    assert "smoke" in yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
    # the code repo itself got no commits: the workspace is its own repo
    log = subprocess.run(["git", "log", "--oneline"], cwd=proj, capture_output=True, text=True)
    assert log.stdout == ""
