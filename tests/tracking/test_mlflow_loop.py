"""The active-learning flow with ``tracking.mlflow: true`` against a real local MLflow store
(SQLite in the workspace): one run per loop, nested rounds, metrics, params, loss curves,
artifacts, a model that loads back, the registry, and resume continuing the same run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from segloop.config import Config, parse_config

mlflow = pytest.importorskip("mlflow", reason="the segloop[mlflow] extra is not installed")


def _config(tmp_path: Path, root: Path, name: str, **tracking: Any) -> Config:
    return parse_config({
        "base": {"seed": 1, "paths": {"workspace": str(tmp_path / name / "ws"),
                                      "dvc_remote": str(tmp_path / name / "remote"),
                                      "reports": str(tmp_path / name / "reports")}},
        "data": {"root": str(root)},
        "train": {"model": "unet", "width": 4, "depth": 2, "steps": 4, "batch_size": 2},
        "active": {"image_size": [24, 32], "rounds": 2, "initial_fraction": 0.2,
                   "budget_per_round": 0.2, "strategy": "entropy"},
        "tracking": {"mlflow": True, **tracking},
    })


def _client(cfg: Config) -> Any:
    from segloop.tracking.mlflow_runs import tracking_uri

    uri = tracking_uri(cfg)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_loop_logs_rounds_resumes_the_same_run_and_promotes(
        prefect_harness: None, camvid_root: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, interrupted_loop: Callable[..., None]) -> None:
    from segloop.active import loop
    from segloop.flows.active_learning import active_learning_flow
    from segloop.tracking.registry import promote

    cfg = _config(tmp_path, camvid_root, "a")
    interrupted_loop(cfg)  # killed before round 2's commit, then resumed below
    client = _client(cfg)
    (killed,) = client.search_runs(
        [client.get_experiment_by_name("segloop-active_learning").experiment_id],
        filter_string="tags.`segloop.flow` = 'active_learning'")
    assert killed.info.status == "FAILED"  # the kill shows in MLflow
    result = active_learning_flow(config=cfg)
    assert result.status == "complete"

    ws = tmp_path / "a/ws"
    assert (ws / "work/mlflow/mlflow.db").is_file()  # the local store lives in the workspace
    exp = client.get_experiment_by_name("segloop-active_learning")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1  # the resumed flow run continued the same MLflow run
    parent = parents[0]
    assert parent.info.run_id == killed.info.run_id and parent.info.status == "FINISHED"
    children = {int(r.data.tags["segloop.round"]): r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == [0, 1, 2]  # no round logged twice
    # params: the flattened config
    assert parent.data.params["active.strategy"] == "entropy"
    assert parent.data.params["train.steps"] == "4"
    # the mIoU chart: one value per round, equal to the round's metrics record
    history = client.get_metric_history(parent.info.run_id, "miou")
    assert sorted(m.step for m in history) == [0, 1, 2]
    for m in history:
        assert m.value == pytest.approx(result.rounds[m.step]["miou"])
    assert any(k.startswith("iou.") for k in parent.data.metrics)
    for k, run in children.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["segloop.dvc_tag"] == f"labels/r{k:03d}"
        assert len(run.data.tags["segloop.labels_commit"]) == 40
        assert run.data.metrics["labelled_images"] == result.rounds[k]["labelled_images"]
        assert run.data.metrics["cost"] == result.rounds[k]["labelled_pixels"]
        assert run.data.metrics["seconds_per_step"] > 0
        losses = client.get_metric_history(run.info.run_id, "train_loss")
        assert sorted(m.step for m in losses) == [0, 1, 2, 3]  # every training step
        files = {f.path for f in client.list_artifacts(run.info.run_id, "selection")}
        assert {"selection/round.json", f"selection/round_{k:03d}.png"} <= files
        assert {f.path for f in client.list_artifacts(run.info.run_id)} >= {"model"}
    reports = {f.path for f in client.list_artifacts(parent.info.run_id, "reports")}
    assert "reports/miou_vs_labelled.png" in reports and "reports/rounds.csv" in reports

    # promote round 1: registered, alias champion, and it loads back as the same network
    done = promote(cfg, 1)
    assert (done.name, done.version, done.alias) == ("segloop-segmenter", "1", "champion")
    assert promote(cfg, 1).version == "1"  # promoting again reuses the version
    from segloop.tracking.mlflow_runs import tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(cfg))  # as the CLI's hint says
    loaded = mlflow.pytorch.load_model(f"models:/{done.name}@champion")
    ctx = loop.open_context(cfg)
    ours = loop.load_model(ctx, 1).eval()
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.eval()(x).numpy(), ours(x).numpy())
