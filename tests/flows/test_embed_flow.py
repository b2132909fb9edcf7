"""The embed flow end to end on real CamVid images, tiny SAM, under Prefect's test harness."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from segloop.config import Config, parse_config
from segloop.embed import store
from segloop.errors import SegloopError


def _config(tmp_path: Path, root: Path, **embed: object) -> Config:
    return parse_config({
        "base": {"paths": {"workspace": str(tmp_path / "ws"),
                           "dvc_remote": str(tmp_path / "remote"),
                           "reports": str(tmp_path / "reports")}},
        "data": {"root": str(root), "split": "val"},
        "models": {"sam": {"variant": "tiny"}},
        "embed": {"limit": 4, "shard_size": 2, **embed},
        "tracking": {"mlflow": True},  # also checks the flow's MLflow run (segloop[mlflow])
    })


def _git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_embed_flow_versions_output_and_rerun_skips_everything(
    prefect_harness: None, shared_camvid: Path, tmp_path: Path
) -> None:
    from segloop.flows.embed import embed_flow

    summary = embed_flow(config=_config(tmp_path, shared_camvid))
    out = tmp_path / "ws" / "data" / "embeddings" / "camvid"
    assert summary["output"] == str(out)
    assert summary["images_embedded"] == 4 and summary["shards_written"] == 2
    assert summary["masks_written"] == summary["total_masks_in_output"] == 400
    assert summary["bytes_written"] == sum(p.stat().st_size for p in out.rglob("*.parquet"))
    got = store.read_embeddings(str(out))
    assert got.tokens.shape == (4, 100, 1024) and got.hw.tolist() == [[360, 480]] * 4
    # versioned: the .dvc file is committed in the workspace, the data pushed to the remote
    ws = tmp_path / "ws"
    assert "data/embeddings/camvid.dvc" in _git(ws, "ls-files")
    assert _git(ws, "log", "-1", "--format=%s").startswith("embeddings: camvid")
    assert any((tmp_path / "remote").rglob("*"))
    report = json.loads((tmp_path / "reports" / "embed" / "summary.json").read_text())
    assert report["commit"] == _git(ws, "rev-parse", "HEAD")

    head = _git(ws, "rev-parse", "HEAD")
    again = embed_flow(config=_config(tmp_path, shared_camvid))
    assert again["images_embedded"] == 0 and again["images_skipped"] == 4
    assert _git(ws, "rev-parse", "HEAD") == head  # nothing new, nothing committed
    # MLflow: both runs on this output are one MLflow run, holding the latest summary
    import mlflow

    uri = f"sqlite:///{ws / 'work/mlflow/mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("segloop-embed").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["images_skipped"] == 4
    assert runs[0].data.params["embed.shard_size"] == "2"
    assert [f.path for f in client.list_artifacts(runs[0].info.run_id, "reports")] == [
        "reports/summary.json"]


def test_embed_flow_reports_a_failed_shard_and_keeps_the_others(
    prefect_harness: None, camvid_root: Path, tmp_path: Path
) -> None:
    from segloop.flows.embed import embed_flow

    (camvid_root / "train" / "train_003.png").write_bytes(b"not a png")
    cfg = parse_config({**_config(tmp_path, camvid_root).model_dump(),
                        "data": {"root": str(camvid_root), "split": "train"}})
    with pytest.raises(SegloopError, match=r"1 shard\(s\) failed.*train_003.png"):
        embed_flow(config=cfg)
    out = tmp_path / "ws" / "data" / "embeddings" / "camvid"
    assert len(store.read_embeddings(str(out), tokens=False, masks=False).image_ids) == 2
