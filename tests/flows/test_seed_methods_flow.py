"""MaskDiffusion and G4Seg as pseudolabel methods under Prefect's test harness, with the tiny
Stable Diffusion and tiny CLIP: random weights make the labels meaningless; the rounds,
their contract (labels, scores, round.json naming the input), versions and no-op reruns
are what is checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segloop.config import Config, parse_config
from segloop.errors import ConfigError
from segloop.pseudolabel import store


def _config(tmp_path: Path, root: Path, **pseudo: Any) -> Config:
    return parse_config({
        "base": {"paths": {"workspace": str(tmp_path / "ws"),
                           "dvc_remote": str(tmp_path / "remote"),
                           "reports": str(tmp_path / "reports")}},
        "data": {"root": str(root), "split": "train"},
        "models": {"diffusion": {"model_id": "tiny"}, "clip": {"model_id": "tiny"},
                   "sam": {"variant": "tiny"}},
        "embed": {"shard_size": 4, "compile": False, "image_embeddings": True},
        "pseudolabel": {"method": "maskdiffusion", "chunk_size": 4, "limit": 6,
                        "side_by_side": 2, "classes": ["sky", "road", "car"],
                        "maskdiffusion": {"resolution": 32},
                        "g4seg": {"resolution": 32}, **pseudo},
    })


def _git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_maskdiffusion_round_refined_by_g4seg(prefect_harness: None, camvid_root: Path,
                                              tmp_path: Path) -> None:
    from segloop.flows.pseudolabel import pseudolabel_flow

    cfg = _config(tmp_path, camvid_root, refine="g4seg")
    summary = pseudolabel_flow(config=cfg)
    ws = tmp_path / "ws"
    assert summary["tag"] == "pseudolabels/maskdiffusion/r000"
    assert summary["images"] == summary["images_labelled"] == 6
    refined = summary["refined"]
    assert isinstance(refined, dict)
    assert refined["tag"] == "pseudolabels/maskdiffusion-g4seg/r000"
    assert refined["images_labelled"] == 6 and refined["maps_refined"] > 0
    source = ws / "data/pseudolabels/maskdiffusion/round_000"
    folder = ws / "data/pseudolabels/maskdiffusion-g4seg/round_000"
    meta = json.loads((folder / "round.json").read_text())
    assert meta["method"] == "maskdiffusion-g4seg" and meta["pseudo"] is True
    assert meta["inputs"]["round"]["path"] == "data/pseudolabels/maskdiffusion/round_000"
    assert meta["inputs"]["round"]["fingerprint"] == json.loads(
        (source / "round.json").read_text())["fingerprint"]
    assert meta["settings"]["g4seg"]["timestep"] == 400 and meta["settings"]["threshold"] is None
    changed = 0
    for png in sorted((folder / "labels").glob("*.png")):
        lab = np.asarray(Image.open(png))
        assert lab.shape == (24, 32) and set(np.unique(lab)) <= {0, 3, 8}
        before = store.read_scores(source, png.stem)
        after = store.read_scores(folder, png.stem)
        outside = (before < 0.2) | (before > 0.6)  # G4Seg moves only the uncertain band
        np.testing.assert_allclose(after[outside], before[outside], atol=2e-3)
        changed += int(np.abs(after - before).max() > 2e-3)
    assert changed > 0
    assert (folder / "metrics.json").is_file()  # evaluated like any seed round
    assert "data/pseudolabels/maskdiffusion-g4seg/round_000.dvc" in _git(ws, "ls-files")
    refined_report = json.loads(
        (tmp_path / "reports/pseudolabel/refined/summary.json").read_text())
    assert refined_report["method"] == "maskdiffusion-g4seg"

    # same settings and inputs: both rounds are up to date, nothing committed
    head = _git(ws, "rev-parse", "HEAD")
    again = pseudolabel_flow(config=cfg)
    assert again["up_to_date"] and again["refined"]["up_to_date"]  # type: ignore[index]
    assert _git(ws, "rev-parse", "HEAD") == head
    # another weight: a new refined round from the same input
    other = pseudolabel_flow(config=_config(
        tmp_path, camvid_root, refine="g4seg",
        refine_input="data/pseudolabels/maskdiffusion/round_000",
        g4seg={"resolution": 32, "w_cross": 3.0}))
    assert other["refined"]["tag"] == "pseudolabels/maskdiffusion-g4seg/r001"  # type: ignore[index]


def test_clusters_seed_round_from_a_maskdiffusion_round(prefect_harness: None,
                                                        camvid_root: Path,
                                                        tmp_path: Path) -> None:
    from segloop.flows.embed import embed_flow
    from segloop.flows.pseudolabel import pseudolabel_flow

    pseudolabel_flow(config=_config(tmp_path, camvid_root))  # the coarse maps
    embed_flow(config=_config(tmp_path, camvid_root))  # SAM image embeddings (tiny SAM)
    cfg = _config(tmp_path, camvid_root, method="clusters", clusters={
        "coarse": "data/pseudolabels/maskdiffusion/round_000", "tau": 0.5})
    summary = pseudolabel_flow(config=cfg)
    ws = tmp_path / "ws"
    assert summary["tag"] == "pseudolabels/clusters/r000" and summary["images"] == 6
    folder = ws / "data/pseudolabels/clusters/round_000"
    meta = json.loads((folder / "round.json").read_text())
    assert meta["settings"]["coarse"]["path"] == "data/pseudolabels/maskdiffusion/round_000"
    assert meta["settings"]["clusters"]["alpha"] == 0.5
    seeded = 0
    for png in sorted((folder / "labels").glob("*.png")):
        lab = np.asarray(Image.open(png))
        assert lab.shape == (24, 32) and set(np.unique(lab)) <= {0, 3, 8, 255}
        seeded += int((lab != 255).sum())
    assert 0 < seeded < 6 * 24 * 32  # seeds where maps are sure, abstain elsewhere
    assert pseudolabel_flow(config=cfg)["up_to_date"]
    # the same seeds over clusters of MaskDiffusion's own features: a new round
    md = pseudolabel_flow(config=_config(tmp_path, camvid_root, method="clusters", clusters={
        "coarse": "data/pseudolabels/maskdiffusion/round_000", "features": "maskdiffusion"}))
    assert md["tag"] == "pseudolabels/clusters/r001" and md["images"] == 6
    meta = json.loads((ws / "data/pseudolabels/clusters/round_001/round.json").read_text())
    assert meta["settings"]["clusters"]["features"] == "maskdiffusion"
    assert meta["settings"]["maskdiffusion"]["resolution"] == 32


def test_refine_input_without_refine_is_refused(prefect_harness: None, camvid_root: Path,
                                                tmp_path: Path) -> None:
    from segloop.flows.pseudolabel import pseudolabel_flow

    cfg = _config(tmp_path, camvid_root, refine_input="data/pseudolabels/usam/round_000")
    with pytest.raises(ConfigError, match="refine is none"):
        pseudolabel_flow(config=cfg)
