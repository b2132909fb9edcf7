"""Image methods of the pseudolabel flow (MaskDiffusion) without Prefect: the plan lists the
data section's images by content id, chunks resume after an interruption, the round holds
label maps in the target's ids, and a rerun with the same settings is a no-op."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segloop.config import Config, parse_config
from segloop.context import open_workspace
from segloop.errors import DataError, ModelOutputError
from segloop.pseudolabel import finish, image_label, mask_label, plan, store
from segloop.pseudolabel.label_mapping import ABSTAIN
from tests.pseudolabel.conftest import image_method_plan


def _config(tmp_path: Path, root: Path, **md: object) -> Config:
    return parse_config({
        "base": {"paths": {"workspace": str(tmp_path / "ws"),
                           "dvc_remote": str(tmp_path / "remote")}},
        "data": {"root": str(root), "split": "train"},
        "models": {"diffusion": {"model_id": "tiny"}},
        "pseudolabel": {"method": "maskdiffusion", "chunk_size": 4, "evaluate": False,
                        "limit": 6, "classes": ["sky", "road", "car"],
                        "maskdiffusion": {"resolution": 32, **md}},
    })


def _label(cfg: Config, p: plan.PseudoPlan, chunks: list[int], root: Path) -> None:
    worker = image_label.make_worker(cfg, p, mask_label.target_dataset(cfg, str(root)))
    for k in chunks:
        image_label.label_image_chunk(p, k, worker.segmenter, worker.targets,
                                      image_label.abstain_below(cfg), progress=False)


def test_labels_from_scores_maps_argmax_to_target_ids_and_abstains() -> None:
    scores = np.array([[[0.9, 0.1]], [[0.2, 0.3]]], np.float32)  # (2 labels, 1, 2)
    ids = np.array([8, 3])
    assert image_label.labels_from_scores(scores, ids).tolist() == [[8, 3]]
    # the second pixel's best score (0.3) is below 0.5: abstain there
    assert image_label.labels_from_scores(scores, ids, 0.5).tolist() == [[8, ABSTAIN]]
    with pytest.raises(DataError, match="3 labels"):
        image_label.labels_from_scores(scores, np.array([1, 2, 3]))


def test_non_finite_unet_output_stops_the_chunk_naming_the_image(
    tmp_path: Path, camvid_root: Path
) -> None:
    """A float16 UNet that overflows must not become labels (NaN argmax = class 0)."""
    import torch

    cfg = _config(tmp_path, camvid_root)
    ws, dataset, p = image_method_plan(cfg, camvid_root)
    worker = image_label.make_worker(cfg, p, mask_label.target_dataset(cfg, str(camvid_root)))
    unet = worker.segmenter.model.pipe.unet

    def overflow(module: object, args: object, out: torch.Tensor) -> torch.Tensor:
        return out * float("inf")

    handle = unet.conv_in.register_forward_hook(overflow)
    try:
        with pytest.raises(ModelOutputError, match=r"maskdiffusion, image train_\d+\.png: "
                           r"Stable Diffusion's UNet gave non-finite features \(dtype float32\)"
                           r".*base\.dtype: float32.*nothing of chunk 0 was written"):
            image_label.label_image_chunk(p, 0, worker.segmenter, worker.targets,
                                          progress=False)
    finally:
        handle.remove()
    assert plan.plan(cfg, ws, dataset).done == set()


def test_maskdiffusion_round_resumes_commits_and_is_then_a_no_op(
    tmp_path: Path, camvid_root: Path
) -> None:
    cfg = _config(tmp_path, camvid_root)
    ws, dataset, p = image_method_plan(cfg, camvid_root)
    assert (p.method, p.round, len(p.image_ids), len(p.chunks)) == ("maskdiffusion", 0, 6, 2)
    first_six = sorted(s.name for s in dataset.samples())[:6]  # limit: the first 6 by name
    assert sorted(p.names.values()) == first_six
    _label(cfg, p, [0], camvid_root)  # ... and the run dies here

    again = plan.plan(cfg, ws, dataset)
    assert again.resumed and again.done == {0} and again.todo == [1]
    first = {i: store.read_label(p.paths.staging, i) for i in p.chunks[0]}
    _label(cfg, again, again.todo, camvid_root)
    info = finish.commit(cfg, ws, again, None, None)
    folder = ws.root / "data/pseudolabels/maskdiffusion/round_000"
    assert info.path == folder and info.tag == "pseudolabels/maskdiffusion/r000"
    pngs = sorted((folder / "labels").glob("*.png"))
    assert len(pngs) == 6
    for png in pngs:
        lab = np.asarray(Image.open(png))
        assert lab.shape == (24, 32) and lab.dtype == np.uint8
        assert set(np.unique(lab)) <= {0, 3, 8}  # sky, road, car: every pixel labelled
    for image_id, lab in first.items():  # what the killed run staged is what was committed
        assert np.array_equal(store.read_label(folder, image_id), lab)
        soft = store.read_scores(folder, image_id)  # (3 labels, 24, 32) soft maps in [0, 1]
        assert soft.shape == (3, 24, 32) and soft.min() >= 0 and soft.max() <= 1
        winners = {0: 0, 3: 1, 8: 2}  # class id -> label index
        for cid in np.unique(lab):  # each painted label's map peaks at 1 somewhere
            assert soft[winners[int(cid)]].max() == 1.0
    meta = json.loads((folder / "round.json").read_text())
    assert meta["method"] == "maskdiffusion" and meta["inputs"]["target"] is None
    assert meta["inputs"]["dataset"] == {"name": "camvid", "format": "camvid", "split": "train"}
    assert meta["settings"]["maskdiffusion"]["feature_blocks"] == [0, 1]
    assert meta["settings"]["diffusion"]["model_id"] == "tiny"
    per_label = meta["counts"]["pixels_per_label"]
    assert set(per_label) == {"sky", "road", "car"}
    assert sum(per_label.values()) == 6 * 24 * 32
    assert store.read_masks(folder).num_rows == 0  # no masks: an image method

    done = plan.plan(cfg, ws, dataset)
    assert done.existing is not None and done.round == 0
    changed = plan.plan(_config(tmp_path, camvid_root, timestep=10), ws, dataset)
    assert changed.existing is None and changed.round == 1


def test_a_changed_image_makes_a_new_round(tmp_path: Path, camvid_root: Path) -> None:
    cfg = _config(tmp_path, camvid_root)
    ws = open_workspace(cfg)
    dataset = mask_label.target_dataset(cfg, str(camvid_root))
    before = plan.plan(cfg, ws, dataset)
    name = before.names[before.image_ids[0]]
    path = camvid_root / "train" / name
    pixels = np.asarray(Image.open(path)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(path)
    after = plan.plan(cfg, ws, mask_label.target_dataset(cfg, str(camvid_root)))
    assert after.fingerprint != before.fingerprint
    assert after.names[after.image_ids[0]] == name or name in after.names.values()


def test_image_methods_need_the_dataset(tmp_path: Path, camvid_root: Path) -> None:
    cfg = _config(tmp_path, camvid_root)
    with pytest.raises(Exception, match="data section's dataset"):
        plan.plan(cfg, open_workspace(cfg))
