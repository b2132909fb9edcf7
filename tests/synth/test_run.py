"""Generation with the tiny pipeline: reproducible, resumable, filtered, manifest complete."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segloop.config import Config, parse_config
from segloop.data.manifest_dataset import ManifestDataset
from segloop.errors import ConfigError, ModelOutputError, StoreError
from segloop.synth import steps, store


def _config(**synth: Any) -> Config:
    return parse_config({
        "models": {"diffusion": {"model_id": "tiny", "seed": 3}},
        "synth": {"classes": ["cat", {"label": "vehicle", "names": ["car", "bus"]}],
                  "images_per_class": 5, "batch_size": 2, "chunk_size": 3, "steps": 2,
                  **synth},
    })


def _generate(cfg: Config, out: str, pipe: Any = None, scorer: Any = None) -> steps.SynthPlan:
    plan = steps.plan(cfg, out)
    for chunk in plan.chunks:
        steps.generate_chunk(cfg, out, chunk, pipe=pipe, scorer_=scorer, progress=False)
    return plan


def _files(out: str) -> dict[str, str]:
    root = Path(out)
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


class CountingPipe:
    """Wraps a pipeline; counts images; optionally dies once ``limit`` images are made."""

    def __init__(self, pipe: Any, limit: int | None = None) -> None:
        self.pipe, self.limit, self.images = pipe, limit, 0

    def __call__(self, **kw: Any) -> Any:
        n = len(kw["prompt"])
        if self.limit is not None and self.images + n > self.limit:
            raise KeyboardInterrupt("killed")
        self.images += n
        return self.pipe(**kw)


def test_same_config_and_seed_give_byte_identical_images(tmp_path: Path) -> None:
    cfg = _config()
    _generate(cfg, str(tmp_path / "a"))
    _generate(cfg, str(tmp_path / "b"))
    a, b = _files(str(tmp_path / "a")), _files(str(tmp_path / "b"))
    assert len(a) == 10 and a == b
    other = _config()
    other = parse_config({**other.model_dump(), "base": {"seed": 1}})
    _generate(other, str(tmp_path / "c"))
    assert set(_files(str(tmp_path / "c")).values()).isdisjoint(a.values())


def test_interrupted_run_resumes_with_only_the_missing_images(tmp_path: Path) -> None:
    cfg = _config()
    out = str(tmp_path / "ds")
    dying = CountingPipe(steps.pipeline(cfg).pipe, limit=6)  # dies in its 4th batch
    with pytest.raises(KeyboardInterrupt):
        _generate(cfg, out, pipe=dying)
    assert dying.images == 5 and len(_files(out)) == 5
    counting = CountingPipe(steps.pipeline(cfg).pipe)
    plan = _generate(cfg, out, pipe=counting)
    assert plan.present == 5 and counting.images == 5
    final = steps.finalize(cfg, out)
    assert final["images"] == 10
    manifest = store.read_manifest(out)
    pairs = sorted(zip(manifest.column("label").to_pylist(),
                       manifest.column("index").to_pylist(), strict=True))
    assert pairs == sorted([(lab, i) for lab in ("cat", "vehicle") for i in range(5)])
    for uri in manifest.column("image_uri").to_pylist():
        assert (Path(out) / uri).is_file()
    assert not (Path(out) / store.PARTS).exists()
    assert steps.plan(cfg, out).todo == 0


def test_a_retried_chunk_makes_only_what_its_failed_try_left(tmp_path: Path) -> None:
    cfg = _config()
    out = str(tmp_path / "ds")
    chunk = steps.plan(cfg, out).chunks[0]  # 3 jobs, batches of 2
    dying = CountingPipe(steps.pipeline(cfg).pipe, limit=2)  # dies in its 2nd batch
    with pytest.raises(KeyboardInterrupt):
        steps.generate_chunk(cfg, out, chunk, pipe=dying, progress=False)
    counting = CountingPipe(steps.pipeline(cfg).pipe)
    stats = steps.generate_chunk(cfg, out, chunk, pipe=counting, progress=False)  # the retry
    assert counting.images == 1 and stats.accepted + stats.rejected == 1
    assert len(store.done_jobs(out)) == 3


def test_non_finite_pixels_stop_the_batch_and_name_the_image(tmp_path: Path) -> None:
    """A VAE that overflows (NaN pixels) must not turn into black PNGs in the dataset."""
    import torch

    cfg = _config()
    out = str(tmp_path / "ds")
    chunk = steps.plan(cfg, out).chunks[0]  # cat #0..#2, batches of 2
    pipe = steps.pipeline(cfg).pipe

    def last_image_nan(module: object, args: object, decoded: torch.Tensor) -> torch.Tensor:
        decoded = decoded.clone()
        decoded[-1] = float("nan")
        return decoded

    handle = pipe.vae.decoder.register_forward_hook(last_image_nan)
    try:
        with pytest.raises(ModelOutputError, match=r"1 of 2 images.*'cat' #1 \(seed"):
            steps.generate_chunk(cfg, out, chunk, pipe=pipe, progress=False)
    finally:
        handle.remove()
    assert _files(out) == {} and store.done_jobs(out) == set()
    stats = steps.generate_chunk(cfg, out, chunk, pipe=pipe, progress=False)  # fixed: goes on
    assert stats.accepted + stats.rejected == 3


def test_kill_between_compaction_and_part_deletion_keeps_rows_once(tmp_path: Path) -> None:
    import shutil

    cfg = _config()
    out = str(tmp_path / "ds")
    _generate(cfg, out)
    parts = Path(out) / store.PARTS
    shutil.copytree(parts, tmp_path / "parts-copy")
    steps.finalize(cfg, out)
    # the kill: compaction wrote manifest.parquet, the parts were not deleted yet
    shutil.copytree(tmp_path / "parts-copy", parts)
    assert store.read_manifest(out).num_rows == 10 and len(store.done_jobs(out)) == 10
    assert steps.finalize(cfg, out)["images"] == 10
    manifest = store.read_manifest(out)
    assert manifest.num_rows == 10 and not parts.exists()
    assert len(ManifestDataset(out)) == 10


def test_manifest_rows_superclasses_and_embed_input(tmp_path: Path) -> None:
    cfg = _config(negative_prompt="blurry")
    out = str(tmp_path / "ds")
    _generate(cfg, out)
    steps.finalize(cfg, out)
    rows = store.read_manifest(out).to_pylist()
    vehicle = [r for r in rows if r["label"] == "vehicle"]
    assert sorted({r["class_name"] for r in vehicle}) == ["bus", "car"]
    assert {r["class_index"] for r in vehicle} == {1}
    r = rows[0]
    assert r["prompt"] == "a photo of a cat" and r["negative_prompt"] == "blurry"
    assert r["model_id"] == "tiny" and r["steps"] == 2 and r["scheduler"] == "default"
    assert r["image_uri"] == f"cat/{r['image_id']}.png" and r["clip_score"] is None
    assert r["seconds"] > 0 and (r["height"], r["width"]) == (32, 32)
    ds = ManifestDataset(out)  # what the embed flow reads (data.format: manifest)
    assert len(ds) == 10 and ds.sources() == {"synthetic"}
    sample = next(ds.samples())
    loaded = ds.load(sample)
    row = next(r for r in rows if r["name"] == sample.name)
    assert loaded.image.shape == (32, 32, 3) and loaded.image_id == row["image_id"]


class StubScorer:
    """Own-label probability 0.8 for label 0 ("cat"), 0.2 for label 1 ("vehicle")."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score(self, images: Sequence[np.ndarray], texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.tile(np.array([[0.8, 0.2]], np.float32), (len(images), 1))


def test_filter_drops_and_records_low_scores(tmp_path: Path) -> None:
    cfg = _config(filter_threshold=0.5)
    out = str(tmp_path / "ds")
    stub = StubScorer()
    _generate(cfg, out, scorer=stub)
    final = steps.finalize(cfg, out)
    assert stub.calls[0] == ["a photo of a cat", "a photo of a vehicle"]
    assert final["images"] == 5 and final["rejected"] == 5
    assert final["per_class"] == [
        {"label": "cat", "names": "cat", "images": 5, "rejected": 0},
        {"label": "vehicle", "names": "car, bus", "images": 0, "rejected": 5}]
    rejects = store.read_rejects(out).to_pylist()
    assert {r["label"] for r in rejects} == {"vehicle"}
    assert all(r["clip_score"] == pytest.approx(0.2) for r in rejects)
    assert all(r["clip_scores"] == pytest.approx([0.8, 0.2]) for r in rejects)
    assert all(r["image_uri"].startswith("_rejects/vehicle/") for r in rejects)
    assert all((Path(out) / r["image_uri"]).is_file() for r in rejects)
    kept = store.read_manifest(out).to_pylist()
    assert all(r["clip_score"] == pytest.approx(0.8) for r in kept)
    assert steps.plan(cfg, out).todo == 0  # rejects count as done: not regenerated


def test_bad_configs_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="synth.classes is empty"):
        steps.plan(parse_config({"synth": {}}), str(tmp_path / "x"))
    out = str(tmp_path / "ds")
    _generate(_config(images_per_class=1), out)
    with pytest.raises(StoreError, match="steps: 2 there, 3 now"):
        steps.plan(_config(images_per_class=1, steps=3), out)


def test_tiny_clip_filter_through_the_configured_loader(tmp_path: Path) -> None:
    cfg = parse_config({**_config(images_per_class=2).model_dump(),
                        "models": {"diffusion": {"model_id": "tiny", "seed": 3},
                                   "clip": {"model_id": "tiny"}}})
    out = str(tmp_path / "ds")
    _generate(cfg, out)
    final = steps.finalize(cfg, out)
    rows = store.read_manifest(out).to_pylist() + store.read_rejects(out).to_pylist()
    assert final["images"] + final["rejected"] == 4 and len(rows) == 4
    assert all(0.0 <= r["clip_score"] <= 1.0 for r in rows)
    kept = {r["image_id"] for r in store.read_manifest(out).to_pylist()}
    assert all((r["clip_score"] >= 0.5) == (r["image_id"] in kept) for r in rows)
