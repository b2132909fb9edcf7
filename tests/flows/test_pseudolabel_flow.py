"""synthesize -> embed (synthetic, target) -> pseudolabel -> evaluate -> active learning,
with tiny SD, tiny SAM and tiny CLIP under Prefect's test harness. Random weights make the
values meaningless; the shapes, files, versions and resume rules are what is checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segloop.config import Config, parse_config
from segloop.data.parquet import read_table
from segloop.data.schemas import PSEUDOLABEL_MASKS


def _config(tmp_path: Path, root: Path, **pseudo: Any) -> Config:
    return parse_config({
        "base": {"paths": {"workspace": str(tmp_path / "ws"),
                           "dvc_remote": str(tmp_path / "remote"),
                           "reports": str(tmp_path / "reports")}},
        "data": {"root": str(root), "split": "train"},
        "models": {"sam": {"variant": "tiny"}, "diffusion": {"model_id": "tiny"},
                   "clip": {"model_id": "tiny"}},
        "synth": {"dataset": "toy", "classes": ["car", "tree"], "images_per_class": 3,
                  "batch_size": 3, "chunk_size": 3, "steps": 2, "filter_threshold": 0.0},
        "embed": {"shard_size": 4, "compile": False},
        "pseudolabel": {"chunk_size": 4, "conf": 0.0, "side_by_side": 2,
                        "usam": {"hidden": 32, "epochs": 2, "batch_size": 4}, **pseudo},
        "train": {"model": "unet", "width": 4, "depth": 2, "steps": 2, "batch_size": 2},
        "active": {"image_size": [24, 32], "rounds": 0, "initial_fraction": 0.2},
        "tracking": {"mlflow": True},  # also checks the flows' MLflow runs (segloop[mlflow])
    })


def _git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_usam_chain_makes_a_versioned_seed_round_the_loop_can_train_on(
    prefect_harness: None, camvid_root: Path, tmp_path: Path
) -> None:
    from segloop.flows.active_learning import active_learning_flow
    from segloop.flows.pseudolabel import pseudolabel_flow
    from segloop.flows.usam import usam_flow

    cfg = _config(tmp_path, camvid_root)
    steps = usam_flow(config=cfg)
    ws = tmp_path / "ws"
    assert steps["synthesize"]["images"] == 6
    assert steps["embed_synthetic"]["images_embedded"] == 6
    assert steps["embed_target"]["images_embedded"] == 10
    synthetic_report = json.loads(
        (tmp_path / "reports/synthetic/embed/summary.json").read_text())
    assert synthetic_report["images_embedded"] == 6
    assert json.loads((tmp_path / "reports/embed/summary.json").read_text())[
        "images_embedded"] == 10
    summary = steps["pseudolabel"]
    assert summary["images"] == summary["images_labelled"] == 10
    folder = ws / "data/pseudolabels/usam/round_000"
    assert summary["round_path"] == str(folder) and summary["tag"] == "pseudolabels/usam/r000"
    # label maps: one per target image, original size, CamVid ids or 255 (no background)
    pngs = sorted((folder / "labels").glob("*.png"))
    assert len(pngs) == 10
    for png in pngs:
        label = np.asarray(Image.open(png))
        assert label.shape == (24, 32) and label.dtype == np.uint8
        assert set(np.unique(label)) <= {8, 5, 255}  # car, tree, abstain
    table = read_table(str(folder / "masks.parquet"), PSEUDOLABEL_MASKS)
    assert table.num_rows == 10 * 100
    assert set(table.column("label").to_pylist()) <= {"car", "tree"}
    meta = json.loads((folder / "round.json").read_text())
    assert meta["pseudo"] is True and meta["method"] == "usam"
    assert meta["tau_rule"] == "median teacher mask entropy" and meta["tau"] > 0
    assert meta["settings"]["usam"]["a"] == 10 and meta["settings"]["usam"]["lambda_unc"] == 0.15
    assert set(meta["checkpoints"]) == {"teacher.safetensors", "student.safetensors"}
    assert (folder / "model" / "student.safetensors").is_file()
    # evaluated against the generated ground truth
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("miou_covered_method_classes", "miou_overall_method_classes", "coverage",
                "map50"):
        assert key in metrics
    assert metrics["method_classes"] == ["tree", "car"]
    assert Image.open(folder / "side_by_side.png").size[1] > 2 * 24
    # versioned like a label round
    assert "data/pseudolabels/usam/round_000.dvc" in _git(ws, "ls-files")
    assert _git(ws, "tag", "--list", "pseudolabels/*") == "pseudolabels/usam/r000"
    assert (ws / "metrics/pseudolabels/usam/round_000.json").is_file()
    report = json.loads((tmp_path / "reports/pseudolabel/metrics.json").read_text())
    assert report["method"] == "usam" and report["round"] == 0
    assert not (ws / "work/pseudolabels/usam").exists()  # staging cleared after commit

    # same settings and inputs: nothing to do, nothing committed, the metrics kept
    head = _git(ws, "rev-parse", "HEAD")
    again = pseudolabel_flow(config=cfg)
    assert again["up_to_date"] and again["round"] == 0 and again["images_labelled"] == 0
    assert _git(ws, "rev-parse", "HEAD") == head
    report = json.loads((tmp_path / "reports/pseudolabel/metrics.json").read_text())
    assert report["miou_covered_method_classes"] == metrics["miou_covered_method_classes"]
    # a kill between the round's commit and its metrics record: the rerun records them
    record = ws / "metrics/pseudolabels/usam/round_000.json"
    kept = json.loads(record.read_text())
    _git(ws, "rm", "-q", str(record.relative_to(ws)))
    _git(ws, "commit", "-qm", "as if killed before the metrics record")
    pseudolabel_flow(config=cfg)
    assert json.loads(record.read_text()) == kept
    assert _git(ws, "status", "--porcelain") == ""

    # the SAM+CLIP baseline on the same targets: its own round family
    clip = pseudolabel_flow(config=_config(
        tmp_path, camvid_root, method="sam_clip",
        sam_clip={"score": "probability", "threshold": 0.0}))
    assert clip["tag"] == "pseudolabels/sam_clip/r000" and clip["images_labelled"] == 10
    assert len(list((ws / "data/pseudolabels/sam_clip/round_000/labels").glob("*.png"))) == 10

    # G4Seg refines the U-SAM round into a round of its own that names its input
    refined = pseudolabel_flow(config=_config(
        tmp_path, camvid_root, refine="g4seg", refine_input="data/pseudolabels/usam/round_000",
        g4seg={"resolution": 32}))["refined"]
    assert refined["tag"] == "pseudolabels/usam-g4seg/r000" and refined["images"] == 10
    refined_folder = ws / "data/pseudolabels/usam-g4seg/round_000"
    meta = json.loads((refined_folder / "round.json").read_text())
    assert meta["inputs"]["round"]["method"] == "usam"
    assert meta["inputs"]["round"]["path"] == "data/pseudolabels/usam/round_000"
    assert meta["settings"]["threshold"] == 0.0  # auto: the U-SAM round's conf
    for png in sorted((refined_folder / "labels").glob("*.png")):
        assert set(np.unique(np.asarray(Image.open(png)))) <= {8, 5, 255}

    # the active-learning loop trains on the seeds, marked as pseudo-labels
    al = _config(tmp_path, camvid_root)
    al = al.model_copy(update={"active": al.active.model_copy(
        update={"pseudolabels": "data/pseudolabels/usam/round_000"})})
    result = active_learning_flow(config=al)
    record = json.loads((ws / "metrics/rounds/round_000.json").read_text())
    assert record["pseudolabels"] == "usam round 000"
    assert record["pseudo_labelled_images"] == 10
    assert record["labelled_images"] == 2  # the human (simulated) labels, counted apart

    # MLflow: one run per pseudo-label round, named by it, with its summary and settings
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws / 'work/mlflow/mlflow.db'}")
    runs = {r.info.run_name: r for r in client.search_runs(
        [client.get_experiment_by_name("segloop-pseudolabel").experiment_id])}
    assert {"pseudolabel (usam/round_000)", "pseudolabel (sam_clip/round_000)"} <= set(runs)
    usam = runs["pseudolabel (usam/round_000)"]
    assert usam.info.status == "FINISHED"
    assert usam.data.metrics["images"] == 10
    assert usam.data.params["pseudolabel.method"] == "usam"
    assert client.get_experiment_by_name("segloop-synthesize") is not None
    assert result.status == "complete"
