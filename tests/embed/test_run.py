"""The embed pipeline without Prefect: planning, resume after a hard kill, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pytest

from segloop.config import Config, parse_config
from segloop.data.parquet import read_table, write_table
from segloop.data.schemas import MANIFEST, MASK_EMBEDDINGS
from segloop.embed import steps, store
from segloop.errors import DataError, ModelNotFoundError, ModelOutputError, StoreError


def _raw(root: Path, **embed: object) -> dict:
    return {"data": {"root": str(root), "split": "train"},
            "models": {"sam": {"variant": "tiny", "seed": 1}},
            "embed": {"shard_size": 4, "points_per_side": 4, **embed}}


def _run_all(cfg: Config, root: Path, out: str) -> steps.EmbedPlan:
    plan = steps.plan(cfg, steps.open_input(cfg, root), out)
    for shard in plan.shards:
        steps.embed_shard(cfg, out, shard, progress=False)
    return plan


def _names(out: str) -> Counter:
    table = read_table(out + "/masks", MASK_EMBEDDINGS, columns=["name"])
    return Counter(table.column("name").to_pylist())


def test_plan_splits_missing_images_into_shards(camvid_root: Path, tmp_path: Path) -> None:
    cfg = parse_config(_raw(camvid_root, limit=9, image_batch_size=3))
    out = str(tmp_path / "emb")
    plan = _run_all(cfg, camvid_root, out)
    assert [len(s.samples) for s in plan.shards] == [4, 4, 1]
    assert [s.shard for s in plan.shards] == [0, 1, 2] and plan.source == "real"
    assert _names(out) == {f"train_{i:03d}.png": 16 for i in range(9)}
    again = steps.plan(parse_config(_raw(camvid_root)), steps.open_input(cfg, camvid_root), out)
    assert again.present == 9 and again.todo == 1 and again.shards[0].shard == 3


def test_resume_after_a_killed_shard_writes_each_image_once(
    camvid_root: Path, tmp_path: Path
) -> None:
    raw = _raw(camvid_root, row_group_mb=1)
    out = str(tmp_path / "emb")
    script = Path(__file__).with_name("_killed_shard.py")
    child = subprocess.run([sys.executable, str(script), json.dumps(raw), str(camvid_root), out],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 1, child.stderr
    assert _names(out) == {f"train_{i:03d}.png": 16 for i in range(4)}  # shard 0 only
    cfg = parse_config(raw)
    plan = _run_all(cfg, camvid_root, out)
    assert plan.present == 4 and plan.todo == 6
    assert all(".tmp-" in p for p in plan.swept)
    assert _names(out) == {f"train_{i:03d}.png": 16 for i in range(10)}
    assert not list(Path(out).rglob(".*tmp*"))


def test_corrupt_image_names_the_file_and_writes_nothing(
    camvid_root: Path, tmp_path: Path
) -> None:
    bad = camvid_root / "train" / "train_001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cfg = parse_config(_raw(camvid_root))
    out = str(tmp_path / "emb")
    plan = steps.plan(cfg, steps.open_input(cfg, camvid_root), out)
    with pytest.raises(DataError, match="train_001.png"):
        steps.embed_shard(cfg, out, plan.shards[0], progress=False)
    assert not (Path(out) / "masks").exists()
    steps.embed_shard(cfg, out, plan.shards[1], progress=False)  # other shards still work
    assert len(_names(out)) == 4


def test_non_finite_sam_output_names_the_image_and_writes_nothing(
    camvid_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from segloop.embed.extract import MaskEmbedder
    from segloop.models import load_sam

    def last_image_nan(module: object, args: object, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[-1] = float("nan")  # the last image of each encoded batch
        return out

    loaded = load_sam("tiny", device="cpu", seed=1)  # its own copy: the hook stays on it
    loaded.model.image_encoder.register_forward_hook(last_image_nan)
    poisoned = MaskEmbedder(loaded, points_per_side=4)
    monkeypatch.setattr(steps, "embedder", lambda cfg, compile=False: poisoned)
    cfg = parse_config(_raw(camvid_root, image_batch_size=4))
    out = str(tmp_path / "emb")
    plan = steps.plan(cfg, steps.open_input(cfg, camvid_root), out)
    with pytest.raises(ModelOutputError, match=r"non-finite tokens.*'train_003.png'"):
        steps.embed_shard(cfg, out, plan.shards[0], progress=False)
    assert not (Path(out) / "masks").exists()


def test_missing_checkpoint_fails_before_anything_is_written(
    camvid_root: Path, tmp_path: Path
) -> None:
    raw = _raw(camvid_root)
    raw["models"] = {"sam": {"variant": "vit_b", "checkpoint": str(tmp_path / "sam.pth")}}
    cfg = parse_config(raw)
    out = str(tmp_path / "emb")
    plan = steps.plan(cfg, steps.open_input(cfg, camvid_root), out)
    with pytest.raises(ModelNotFoundError, match="SAM vit_b weights not found"):
        steps.embed_shard(cfg, out, plan.shards[0], progress=False)
    assert not (Path(out) / "masks").exists()


def test_changed_settings_do_not_mix_into_an_output(camvid_root: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "emb")
    cfg = parse_config(_raw(camvid_root, limit=2))
    _run_all(cfg, camvid_root, out)
    other = parse_config(_raw(camvid_root, points_per_side=5))
    with pytest.raises(StoreError, match="points_per_side: 4 there, 5 now"):
        steps.plan(other, steps.open_input(other, camvid_root), out)


def test_manifest_of_synthetic_images_goes_to_its_partition(
    camvid_root: Path, tmp_path: Path
) -> None:
    rows = [{"image_id": f"{i:016x}", "name": f"cat/{i}.png", "split": "synthetic",
             "source": "synthetic", "image_uri": f"../camvid/train/train_00{i}.png",
             "height": 24, "width": 32, "n_bytes": 1} for i in range(3)]
    manifest = tmp_path / "synth" / "manifest.parquet"
    write_table(str(manifest), MANIFEST, rows)
    raw = _raw(tmp_path / "synth")
    # rows reach outside the manifest's folder ('..'): allowed only when trusted
    raw["data"] = {"format": "manifest", "root": str(manifest.parent), "split": "",
                   "manifest_external": True}
    cfg = parse_config(raw)
    out = str(tmp_path / "emb")
    plan = _run_all(cfg, manifest.parent, out)
    assert plan.source == "synthetic"
    table = read_table(out + "/masks", MASK_EMBEDDINGS, columns=["name", "source"])
    assert set(table.column("source").to_pylist()) == {"synthetic"}
    assert sorted(pc.unique(table.column("name")).to_pylist()) == [r["name"] for r in rows]
    assert store.read_embeddings(out, source="synthetic").tokens.shape == (3, 16, 1024)


def test_compile_auto_only_for_long_cpu_runs(
    camvid_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auto = parse_config(_raw(camvid_root))
    assert steps.use_compile(auto, steps.AUTO_COMPILE_MIN_IMAGES) is True
    assert steps.use_compile(auto, steps.AUTO_COMPILE_MIN_IMAGES - 1) is False
    assert steps.use_compile(parse_config(_raw(camvid_root, compile=False)), 1000) is False
    assert steps.use_compile(parse_config(_raw(camvid_root, compile=True)), 1) is True
    monkeypatch.setattr(steps.shutil, "which", lambda name: None)  # no C++ compiler
    assert steps.use_compile(auto, 1000) is False
    plan = steps.plan(auto, steps.open_input(auto, camvid_root), str(camvid_root / "out"))
    assert not any(s.compile for s in plan.shards)
