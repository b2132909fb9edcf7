"""The synthesize flow end to end with the tiny pipeline, under Prefect's test harness."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from PIL import Image

from segloop.config import Config, parse_config
from segloop.synth import store


def _config(tmp_path: Path) -> Config:
    return parse_config({
        "base": {"paths": {"workspace": str(tmp_path / "ws"),
                           "dvc_remote": str(tmp_path / "remote"),
                           "reports": str(tmp_path / "reports")}},
        "models": {"diffusion": {"model_id": "tiny"}},
        "synth": {"dataset": "toy", "classes": ["forklift", "pallet"],
                  "images_per_class": 3, "batch_size": 2, "chunk_size": 2, "steps": 2,
                  "contact_per_class": 2},
        "tracking": {"mlflow": True},  # also checks the flow's MLflow run (segloop[mlflow])
    })


def _git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_synthesize_flow_versions_the_dataset_and_reruns_as_a_no_op(
    prefect_harness: None, tmp_path: Path
) -> None:
    from segloop.flows.synthesize import synthesize_flow

    summary = synthesize_flow(config=_config(tmp_path))
    out = tmp_path / "ws" / "data" / "synthetic" / "toy"
    assert summary["output"] == str(out) and summary["generated"] == 6
    assert summary["per_class"] == [
        {"label": "forklift", "names": "forklift", "images": 3, "rejected": 0},
        {"label": "pallet", "names": "pallet", "images": 3, "rejected": 0}]
    assert len(list((out / "forklift").glob("*.png"))) == 3
    assert store.read_manifest(str(out)).num_rows == 6
    ws = tmp_path / "ws"
    assert "data/synthetic/toy.dvc" in _git(ws, "ls-files")
    assert any((tmp_path / "remote").rglob("*"))
    sheet = Image.open(summary["contact_sheet"])
    assert sheet.size == (120 + 2 * 96, 2 * 96)
    report = json.loads((tmp_path / "reports" / "synthesize" / "summary.json").read_text())
    assert report["images"] == 6 and report["commit"] == _git(ws, "rev-parse", "HEAD")

    head = _git(ws, "rev-parse", "HEAD")
    again = synthesize_flow(config=_config(tmp_path))
    assert again["generated"] == 0 and again["skipped"] == 6 and again["images"] == 6
    assert _git(ws, "rev-parse", "HEAD") == head
    # MLflow: both runs on this dataset are one MLflow run, holding the latest summary
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws / 'work/mlflow/mlflow.db'}")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("segloop-synthesize").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["segloop.commit"] == head
    assert run.data.metrics["images"] == 6 and run.data.metrics["skipped"] == 6
    assert run.data.params["synth.images_per_class"] == "3"
    assert {f.path for f in client.list_artifacts(run.info.run_id, "reports")} == {
        "reports/summary.json", "reports/contact_sheet.png"}
