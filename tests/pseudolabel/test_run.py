"""The pseudolabel steps without Prefect: resume after an interruption, settings changes,
no-op reruns and the round's content (fake embed outputs written by the real writers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segloop.config import Config, parse_config
from segloop.context import open_workspace
from segloop.pseudolabel import finish, heads, mask_label, plan, store
from segloop.versioning import list_rounds, seed_rounds
from tests.pseudolabel.conftest import write_embeddings, write_manifest

D, H, W = 9, 12, 16


def _grid_masks(rng: np.random.Generator) -> np.ndarray:
    masks = np.zeros((D, H, W), bool)
    for j in range(D):
        y, x = rng.integers(0, H - 4), rng.integers(0, W - 4)
        masks[j, y : y + rng.integers(2, 5), x : x + rng.integers(2, 5)] = True
    return masks


def _images(prefix: str, n: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {f"{prefix}{i:02d}": (rng.normal(size=(D, 1024)).astype(np.float32),
                                 _grid_masks(rng)) for i in range(n)}


@pytest.fixture
def workspace_cfg(tmp_path: Path) -> Config:
    cfg = parse_config({
        "base": {"paths": {"workspace": str(tmp_path / "ws"),
                           "dvc_remote": str(tmp_path / "remote")}},
        "synth": {"dataset": "toy"},
        "pseudolabel": {"chunk_size": 2, "evaluate": False, "conf": 0.0,
                        "usam": {"hidden": 16, "epochs": 2, "batch_size": 4}},
    })
    ws = tmp_path / "ws"
    synthetic = _images("s", 8, 0)
    write_embeddings(str(ws / "data/embeddings/toy"), synthetic)
    write_manifest(ws / "data/synthetic/toy/manifest.parquet",
                   {i: ["car" if k % 2 else "tree"] for k, i in enumerate(synthetic)},
                   ["car", "tree"])
    write_embeddings(str(ws / "data/embeddings/camvid"), _images("t", 5, 1), source="real")
    return cfg


def _label(cfg: Config, p: plan.PseudoPlan, chunks: list[int]) -> None:
    scorer = mask_label.make_scorer(cfg, p, root="")
    for k in chunks:
        mask_label.label_chunk(cfg, p, k, scorer, progress=False)


def test_interrupted_run_resumes_then_commits_then_is_a_no_op(workspace_cfg: Config) -> None:
    cfg = workspace_cfg
    ws = open_workspace(cfg)
    p = plan.plan(cfg, ws)
    assert (p.round, len(p.chunks), p.done, p.resumed) == (0, 3, set(), False)
    record = heads.train_heads(cfg, p, progress=False)
    assert record["images"] == 8 and record["tau_rule"] == "median teacher mask entropy"
    student = heads.head_path(p.paths.staging, "student")
    stamp = student.stat().st_mtime_ns
    _label(cfg, p, [0])  # ... and the run dies here

    again = plan.plan(cfg, ws)
    assert again.resumed and again.done == {0} and again.todo == [1, 2]
    assert heads.train_heads(cfg, again, progress=False)["tau"] == record["tau"]
    assert student.stat().st_mtime_ns == stamp  # loaded, not retrained
    _label(cfg, again, again.todo)
    info = finish.commit(cfg, ws, again, record, None)
    folder = ws.root / "data/pseudolabels/usam/round_000"
    assert info.path == folder and info.tag == "pseudolabels/usam/r000"
    assert len(list((folder / "labels").glob("*.png"))) == 5
    table = store.read_masks(folder)
    assert table.num_rows == 5 * D
    assert sorted(set(table.column("image_id").to_pylist())) == [f"t{i:02d}" for i in range(5)]
    meta = json.loads((folder / "round.json").read_text())
    assert meta["counts"]["images"] == 5 and meta["fingerprint"] == again.fingerprint
    assert not p.paths.staging.exists()

    done = plan.plan(cfg, ws)
    assert done.existing is not None and done.round == 0

    changed = cfg.model_copy(update={"pseudolabel": cfg.pseudolabel.model_copy(
        update={"conf": 0.9})})
    new = plan.plan(changed, ws)
    assert new.existing is None and new.round == 1 and new.fingerprint != again.fingerprint
    assert [r.number for r in list_rounds(ws, seed_rounds("data/pseudolabels/usam",
                                                          "usam"))] == [0]


def test_staging_of_other_settings_is_discarded(workspace_cfg: Config) -> None:
    cfg = workspace_cfg
    ws = open_workspace(cfg)
    p = plan.plan(cfg, ws)
    heads.train_heads(cfg, p, progress=False)
    _label(cfg, p, [0])
    other = cfg.model_copy(update={"pseudolabel": cfg.pseudolabel.model_copy(
        update={"nms_iou": 0.5})})
    q = plan.plan(other, ws)
    assert not q.resumed and q.done == set()
    assert not heads.head_path(q.paths.staging, "teacher").exists()


def test_inputs_missing_or_misplaced_are_explained(tmp_path: Path) -> None:
    from segloop.errors import ConfigError, DataError

    cfg = parse_config({"base": {"paths": {"workspace": str(tmp_path / "ws"),
                                           "dvc_remote": str(tmp_path / "remote")}}})
    ws = open_workspace(cfg)
    with pytest.raises(DataError, match="run the synthesize flow"):
        plan.plan(cfg, ws)
    outside = parse_config({"pseudolabel": {"output": "/elsewhere/seeds"}})
    with pytest.raises(ConfigError, match="inside the workspace"):
        plan.resolve_paths(outside, ws.root)
