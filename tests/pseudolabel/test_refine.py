"""G4Seg refinement of seed rounds without Prefect: the decision rule, which labels are
refined, resume after an interruption, and rounds that cannot be refined."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from segloop.config import Config, parse_config
from segloop.context import open_workspace
from segloop.errors import DataError
from segloop.pseudolabel import finish, image_label, mask_label, refine, store
from segloop.pseudolabel.label_mapping import ABSTAIN
from tests.pseudolabel.conftest import image_method_plan


def test_decide_thresholds_like_mask_methods_and_keeps_abstentions_like_image_methods() -> None:
    refined = np.array([[[0.7, 0.4, 0.0]], [[0.2, 0.45, 0.0]]], np.float32)  # (2, 1, 3)
    ids = np.array([8, 5])
    before = np.array([[8, ABSTAIN, 5]], np.uint8)
    # mask methods: best label where its score reaches 0.5, else the fill (background 3)
    assert refine.decide(refined, ids, 3, 0.5, before).tolist() == [[8, 3, 3]]
    # threshold 0: a pixel with every score 0 is still the fill, not label 0
    assert refine.decide(refined, ids, 3, 0.0, before).tolist() == [[8, 5, 3]]
    # image methods: the best label wherever the input did not abstain
    assert refine.decide(refined, ids, ABSTAIN, None, before).tolist() == [[8, ABSTAIN, 8]]


def test_only_labels_with_scores_in_the_band_are_refined() -> None:
    calls: list[list[str]] = []

    def refine_all(image: np.ndarray, coarse: np.ndarray, names: list[str]) -> np.ndarray:
        calls.append(list(names))
        return coarse + 0.01

    model = SimpleNamespace(settings=SimpleNamespace(band=(0.2, 0.6)), refine_all=refine_all)
    refiner = SimpleNamespace(model=model, source=SimpleNamespace(labels=("a", "b", "c")))
    coarse = np.array([[[0.9, 0.1]], [[0.3, 0.0]], [[0.0, 0.0]]], np.float32)
    out, n = refine.refine_image(refiner, np.zeros((1, 2, 3), np.uint8), coarse)  # type: ignore[arg-type]
    assert n == 1 and calls == [["b"]]  # "a" and "c" have nothing in [0.2, 0.6]
    np.testing.assert_allclose(out[1], coarse[1] + 0.01)
    np.testing.assert_array_equal(out[[0, 2]], coarse[[0, 2]])


def _config(tmp_path: Path, root: Path, **g4seg: object) -> Config:
    return parse_config({
        "base": {"paths": {"workspace": str(tmp_path / "ws"),
                           "dvc_remote": str(tmp_path / "remote")}},
        "data": {"root": str(root), "split": "train"},
        "models": {"diffusion": {"model_id": "tiny"}, "clip": {"model_id": "tiny"}},
        "pseudolabel": {"method": "maskdiffusion", "chunk_size": 2, "evaluate": False,
                        "limit": 4, "classes": ["sky", "road", "car"],
                        "maskdiffusion": {"resolution": 32},
                        "g4seg": {"resolution": 32, **g4seg}},
    })


def test_an_interrupted_refinement_resumes_and_names_its_input(
    tmp_path: Path, camvid_root: Path
) -> None:
    cfg = _config(tmp_path, camvid_root)
    ws, dataset, p = image_method_plan(cfg, camvid_root)
    worker = image_label.make_worker(cfg, p, dataset)
    for k in p.todo:
        image_label.label_image_chunk(p, k, worker.segmenter, worker.targets, progress=False)
    finish.commit(cfg, ws, p, None, None)
    rel = "data/pseudolabels/maskdiffusion/round_000"

    r = refine.plan_refinement(cfg, ws, dataset, rel)
    assert (r.method, r.round, len(r.chunks)) == ("maskdiffusion-g4seg", 0, 2)
    assert r.refines is not None and r.refines["path"] == rel
    refiner = refine.make_refiner(cfg, r, dataset, ws.root)
    stats = refine.refine_chunk(r, 0, refiner, progress=False)  # ... and the run dies here
    assert stats.images == 2
    again = refine.plan_refinement(cfg, ws, dataset, rel)
    assert again.resumed and again.done == {0} and again.todo == [1]
    refine.refine_chunk(again, 1, refiner, progress=False)
    info = finish.commit(cfg, ws, again, None, None)
    assert info.tag == "pseudolabels/maskdiffusion-g4seg/r000"
    meta = json.loads((info.path / "round.json").read_text())
    assert meta["inputs"]["round"]["round"] == 0 and meta["labels"] == ["sky", "road", "car"]
    assert len(list((info.path / store.SCORES_DIR).glob("*.npz"))) == 4
    assert refine.plan_refinement(cfg, ws, dataset, rel).existing is not None  # a no-op now


def test_rounds_that_cannot_be_refined_are_explained(tmp_path: Path, camvid_root: Path) -> None:
    cfg = _config(tmp_path, camvid_root)
    ws = open_workspace(cfg)
    dataset = mask_label.target_dataset(cfg, str(camvid_root))
    with pytest.raises(DataError, match="not a pseudo-label round"):
        refine.plan_refinement(cfg, ws, dataset, "data/pseudolabels/usam/round_000")
    old = ws.root / "data/pseudolabels/usam/round_000"
    (old / "labels").mkdir(parents=True)
    store.write_json(old / "round.json", {"pseudo": True, "method": "usam", "round": 0})
    with pytest.raises(DataError, match="made before seed rounds stored them"):
        refine.plan_refinement(cfg, ws, dataset, "data/pseudolabels/usam/round_000")
