"""The active-learning flow on a tiny fixture: rounds, versioning, resume, reports."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segloop.config import Config, parse_config
from segloop.data.parquet import read_table
from segloop.data.schemas import LABEL_ROUND, SCORES


def al_config(tmp_path: Path, root: Path, name: str, train: dict[str, Any] | None = None,
              **active: Any) -> Config:
    return parse_config({
        "base": {"seed": 1, "paths": {"workspace": str(tmp_path / name / "ws"),
                                      "dvc_remote": str(tmp_path / name / "remote"),
                                      "reports": str(tmp_path / name / "reports")}},
        "data": {"root": str(root)},
        "train": {"model": "unet", "width": 4, "depth": 2, "steps": 4, "batch_size": 2,
                  **(train or {})},
        "active": {"image_size": [24, 32], "rounds": 2, "initial_fraction": 0.2,
                   "budget_per_round": 0.2, "strategy": "entropy", **active},
    })


def _rounds(ws: Path) -> list[dict[str, Any]]:
    """What each committed round holds, minus timestamps: units and label bytes."""
    out = []
    for folder in sorted(p for p in (ws / "data/labels").glob("round_*") if p.is_dir()):
        table = read_table(str(folder / "round.parquet"), LABEL_ROUND,
                           columns=["image_id", "region_id", "strategy", "score"])
        labels = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                  for p in sorted((folder / "labels").iterdir())}
        out.append({"units": sorted(zip(table.column("image_id").to_pylist(),
                                        table.column("region_id").to_pylist(), strict=True)),
                    "strategy": set(table.column("strategy").to_pylist()), "labels": labels})
    return out


def _tags(ws: Path) -> list[str]:
    return subprocess.run(["git", "tag", "--list", "labels/*"], cwd=ws, check=True,
                          capture_output=True, text=True).stdout.split()


def test_two_rounds_image_level(prefect_harness: None, camvid_root: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from segloop.flows.active_learning import active_learning_flow

    cfg = al_config(tmp_path, camvid_root, "a")
    result = active_learning_flow(config=cfg)
    ws = tmp_path / "a/ws"
    assert result.status == "complete"
    assert _tags(ws) == ["labels/r000", "labels/r001", "labels/r002"]
    rounds = _rounds(ws)
    assert [len(r["units"]) for r in rounds] == [2, 2, 2]  # 20% of 10 images per round
    assert not (ws / "work/mlflow").exists()  # tracking.mlflow is off by default
    previews = sorted(p.name for p in (tmp_path / "a/reports/active_learning/selections")
                      .iterdir())
    assert previews == ["round_000.png", "round_001.png", "round_002.png"]
    images = [u[0] for r in rounds for u in r["units"]]
    assert len(set(images)) == 6  # never the same image twice
    assert rounds[0]["strategy"] == {"typiclust"} and rounds[1]["strategy"] == {"entropy"}
    first = read_table(str(ws / "data/labels/round_000/scores.parquet"), SCORES)
    assert first.num_rows == 10 and None not in first.column("cluster").to_pylist()
    scores = read_table(str(ws / "data/labels/round_001/scores.parquet"), SCORES)
    assert scores.num_rows == 8  # the 8 unlabelled images were scored
    # why: raw uncertainty, class weight (rarity) and cluster (Cluster-Margin) per image
    for column in ("uncertainty", "class_weight", "cluster"):
        assert None not in scores.column(column).to_pylist(), column
    assert [r["round"] for r in result.rounds] == [0, 1, 2]
    assert [r["labelled_images"] for r in result.rounds] == [2, 4, 6]
    assert all(0.0 <= r["miou"] <= 1.0 for r in result.rounds)
    for key in ("metrics", "rounds", "plot"):
        assert Path(result.reports[key]).is_file()
    for k in range(3):
        assert (ws / f"models/round_{k:03d}.safetensors").is_file()
    # everything the flow wrote is committed (or ignored scratch): the workspace is clean
    assert subprocess.run(["git", "status", "--porcelain"], cwd=ws, capture_output=True,
                          text=True, check=True).stdout == ""
    _check_lineage(cfg, tmp_path, capsys)


def _check_lineage(cfg: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`segloop lineage labels/r002`: round 2 <- round 1 and the model that selected it, that
    model <- round 1's labels, each with code, config hash and the flow run that made it."""
    import json

    import yaml

    from segloop.cli import main
    from segloop.versioning.lineage import config_hash

    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    capsys.readouterr()
    assert main(["lineage", "labels/r002", "-p", str(pipeline), "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)
    top = [(s["role"], s.get("path") or s["source"]) for s in steps if s["depth"] == 1]
    assert top == [("previous round", "data/labels/round_001"),
                   ("selected by model", "models/round_001.safetensors"),
                   ("dataset", str(cfg.data.root))]
    model = next(s for s in steps if s.get("path") == "models/round_001.safetensors")
    assert model["record"]["kind"] == "model"
    assert [p["path"] for p in model["record"]["parents"][:1]] == ["data/labels/round_001"]
    for step in steps:
        if step.get("record"):
            assert step["record"]["config_hash"] == config_hash(cfg)
            assert step["record"]["flow_run_id"]  # made inside the flow run
    assert main(["lineage", "labels/r002", "-p", str(pipeline)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("label round data/labels/round_002 (tag labels/r002, commit ")
    assert "    selected by model: model models/round_001.safetensors (commit" in text


def test_resume_after_an_interrupted_round_matches_an_uninterrupted_run(
    prefect_harness: None, camvid_root: Path, tmp_path: Path,
    interrupted_loop: Callable[..., None]
) -> None:
    from segloop.flows.active_learning import active_learning_flow

    active_learning_flow(config=al_config(tmp_path, camvid_root, "full"))
    interrupted_loop(al_config(tmp_path, camvid_root, "resumed"))  # killed in round 2
    ws = tmp_path / "resumed/ws"
    assert _tags(ws) == ["labels/r000", "labels/r001"]
    assert not list((ws / "data/labels").glob(".round_*"))  # nothing half-written
    result = active_learning_flow(config=al_config(tmp_path, camvid_root, "resumed"))
    assert result.status == "complete"
    assert _tags(ws) == _tags(tmp_path / "full/ws")
    assert _rounds(ws) == _rounds(tmp_path / "full/ws")
    # a third run has nothing left to do: no new commit
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws, capture_output=True,
                          text=True).stdout
    active_learning_flow(config=al_config(tmp_path, camvid_root, "resumed"))
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws, capture_output=True,
                          text=True).stdout == head


def test_region_level_round_labels_only_selected_regions(
    prefect_harness: None, camvid_root: Path, tmp_path: Path
) -> None:
    from segloop.flows.active_learning import active_learning_flow

    # semi-supervision, region growing (an option) and the random baseline on the way
    cfg = al_config(tmp_path, camvid_root, "r", train={"semi": {"enabled": True,
                                                                 "start_fraction": 0.0}},
                    level="region", rounds=1, strategy="uig", initial_fraction=0.05,
                    budget_per_round=0.05, annotator="dominant", compare_random=True,
                    region={"n_segments": 12, "max_per_image": 2, "grow": True,
                            "grow_at": [0.5]})
    result = active_learning_flow(config=cfg)
    assert [r["round"] for r in result.rounds] == [0, 1]
    pool_pixels = 10 * 24 * 32
    for row in result.rounds:
        assert row["labelled_pixels"] <= 0.05 * pool_pixels * (row["round"] + 1)
        assert row["clicks"] > 0
    assert "random_miou" not in result.rounds[0] and 0 <= result.rounds[1]["random_miou"] <= 1
    rounds = _rounds(tmp_path / "r/ws")
    units = rounds[1]["units"]
    assert units and all(region >= 0 for _, region in units)
    for r in rounds:  # at most 2 regions of one image per round
        per_image = [image for image, _ in r["units"]]
        assert max(per_image.count(i) for i in per_image) <= 2
    summary = (tmp_path / "r/reports/active_learning/metrics.json").read_text()
    assert "random_miou" in summary


def test_rounds_per_run_stops_early_and_the_next_run_goes_on(
    prefect_harness: None, camvid_root: Path, tmp_path: Path
) -> None:
    from segloop.flows.active_learning import active_learning_flow

    cfg = al_config(tmp_path, camvid_root, "n", rounds=2, rounds_per_run=1)
    first = active_learning_flow(config=cfg)
    assert _tags(tmp_path / "n/ws") == ["labels/r000", "labels/r001"]
    assert [r["round"] for r in first.rounds] == [0]
    second = active_learning_flow(config=cfg)
    assert _tags(tmp_path / "n/ws") == ["labels/r000", "labels/r001", "labels/r002"]
    assert [r["round"] for r in second.rounds] == [0, 1]
