"""The embed pipeline as library calls: plan shards, embed one shard, summarise.

The flow (``flows/embed.py``) is a thin sequence of these; they also run without Prefect.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from segloop.config import Config
from segloop.data.base import Dataset, Sample
from segloop.data.datasets import open_dataset
from segloop.data.ids import image_id
from segloop.data.images import read_image_bytes
from segloop.data.manifest_dataset import ManifestDataset
from segloop.devices import pick_device
from segloop.embed import store
from segloop.embed.extract import ImageMasks, MaskEmbedder
from segloop.embed.tables import EmbeddedImage
from segloop.errors import FLOAT16_OVERFLOW, ConfigError, ModelOutputError
from segloop.models.sam import load_sam
from segloop.versioning import Workspace, lineage, version_path

AUTO_COMPILE_MIN_IMAGES = 16
"""``embed.compile: auto`` compiles on CPU from this many images to do (it pays off after
about 10 images on 2 cores: ~60 s of compiling against ~5 s saved per image)."""


@dataclass(frozen=True)
class ShardPlan:
    """One unit of work: ``samples`` to embed into shard number ``shard`` of ``source``.

    ``compile`` says whether SAM runs through torch.compile (decided once per run).
    """

    shard: int
    source: str
    samples: tuple[Sample, ...]
    compile: bool = False


@dataclass
class EmbedPlan:
    """What a run will do: ``shards`` of the missing images; ``present`` are skipped."""

    out: str
    source: str
    total: int
    present: int
    shards: list[ShardPlan]
    swept: list[str] = field(default_factory=list)

    @property
    def todo(self) -> int:
        return sum(len(s.samples) for s in self.shards)


@dataclass(frozen=True)
class ShardStats:
    """What one shard task wrote."""

    shard: int
    images: int
    masks: int
    bytes_written: int
    seconds: float


def output_url(cfg: Config, workspace_root: str | Path) -> str:
    """The output folder: ``embed.output`` (``{name}`` = data.name) inside the workspace."""
    rel = cfg.embed.output.format(name=cfg.data.name)
    if "://" in rel or rel.startswith("/"):
        return rel
    return str(Path(workspace_root) / rel)


def settings(cfg: Config) -> dict[str, object]:
    """The values that decide what a row means; an output folder keeps one set of them."""
    sam, emb = cfg.models.sam, cfg.embed
    return {
        "sam_variant": sam.variant,
        "sam_checkpoint": Path(sam.checkpoint).name if sam.checkpoint else None,
        "sam_seed": sam.seed if sam.variant == "tiny" else None,
        "points_per_side": emb.points_per_side,
        "all_masks": emb.all_masks,
        "image_embeddings": emb.image_embeddings,
        "embedding_dtype": emb.embedding_dtype,
        "stability_offset": 1.0,
    }


def open_input(cfg: Config, root: str) -> Dataset:
    """The dataset to embed (``data.format``, ``data.split``; labels are not read)."""
    return open_dataset(cfg.data.format, root, cfg.data.split, cfg.data.classes,
                        storage_options=cfg.data.storage_options,
                        manifest_external=cfg.data.manifest_external)


def resolve_source(cfg: Config, dataset: Dataset) -> str:
    """``embed.source``, or for ``auto``: "synthetic" for a synthetic manifest, else "real"."""
    if cfg.embed.source != "auto":
        return cfg.embed.source
    if isinstance(dataset, ManifestDataset):
        sources = dataset.sources()
        if len(sources) > 1:
            raise ConfigError(f"data.root {dataset.root}: the manifest mixes sources "
                              f"{sorted(sources)}; set embed.source or data.split")
        return sources.pop()
    return "real"


def plan(cfg: Config, dataset: Dataset, out: str) -> EmbedPlan:
    """Sweep leftovers, check/record settings, and split the missing images into shards."""
    swept = store.sweep(out)
    store.check_settings(out, settings(cfg))
    samples = list(dataset.samples())
    if cfg.embed.limit:
        samples = samples[: cfg.embed.limit]
    done, next_shard = store.present(out)
    todo = [s for s in samples if s.name not in done]
    size = cfg.embed.shard_size
    source = resolve_source(cfg, dataset)
    compiled = use_compile(cfg, len(todo))
    shards = [ShardPlan(next_shard + k, source, tuple(todo[i : i + size]), compiled)
              for k, i in enumerate(range(0, len(todo), size))]
    return EmbedPlan(out, source, len(samples), len(samples) - len(todo), shards, swept)


def use_compile(cfg: Config, n_todo: int) -> bool:
    """Resolve ``embed.compile`` for a run with ``n_todo`` images to embed."""
    setting = cfg.embed.compile
    if setting != "auto":
        return bool(setting)
    on_cpu = pick_device(cfg.base.device).type == "cpu"
    has_compiler = any(shutil.which(c) for c in ("g++", "c++", "clang++"))
    return on_cpu and has_compiler and n_todo >= AUTO_COMPILE_MIN_IMAGES


_LOADING = threading.Lock()


@lru_cache(maxsize=2)
def _embedder(variant: str, checkpoint: str | None, seed: int, device: str, dtype: str,
              points_per_side: int, points_per_batch: int, all_masks: bool,
              image_embeddings: bool, compile: bool, fallback: bool) -> MaskEmbedder:
    loaded = load_sam(variant, checkpoint, device=device, dtype=dtype, seed=seed)
    return MaskEmbedder(loaded, points_per_side=points_per_side,
                        points_per_batch=points_per_batch, all_masks=all_masks,
                        image_embeddings=image_embeddings, compile=compile,
                        compile_fallback=fallback)


def release_models() -> None:
    """Drop the extractors loaded by :func:`embedder` (their memory, GPU memory included, is
    freed once nothing else holds them); the next call loads again."""
    _embedder.cache_clear()


def embedder(cfg: Config, compile: bool = False) -> MaskEmbedder:
    """The configured extractor (compiled or not); the model is loaded once per process."""
    sam, emb = cfg.models.sam, cfg.embed
    with _LOADING:  # shards starting together in threads load it once
        return _embedder(sam.variant, sam.checkpoint, sam.seed, cfg.base.device, cfg.base.dtype,
                         emb.points_per_side, emb.points_per_batch, emb.all_masks,
                         emb.image_embeddings, compile, emb.compile == "auto")


def embed_shard(cfg: Config, out: str, shard: ShardPlan, progress: bool = True) -> ShardStats:
    """Embed ``shard.samples`` and write the shard atomically (nothing is kept on error)."""
    start = time.perf_counter()
    extractor = embedder(cfg, shard.compile)
    emb = cfg.embed
    opts = cfg.data.storage_options
    bar = tqdm(total=len(shard.samples), desc=f"embed shard {shard.shard:05d}", unit="img",
               disable=not progress, leave=False)
    with store.ShardWriter(out, shard.source, shard.shard,
                           embedding_dtype=emb.embedding_dtype,
                           image_embeddings=emb.image_embeddings,
                           row_group_bytes=emb.row_group_mb * 2**20) as writer:
        for i in range(0, len(shard.samples), emb.image_batch_size):
            batch = shard.samples[i : i + emb.image_batch_size]
            loaded = [read_image_bytes(s.image_url, opts) for s in batch]
            images = [image for image, _ in loaded]
            features, sizes = extractor.encode(images)
            for j, (sample, (image, raw)) in enumerate(zip(batch, loaded, strict=True)):
                result = extractor.decode(features[j : j + 1], image.shape[:2], sizes[j])
                _require_finite(result, sample, cfg)
                writer.add(EmbeddedImage(image_id(raw), sample.name, result, sizes[j]))
                bar.update(1)
    bar.close()
    return ShardStats(shard.shard, writer.images, writer.rows, writer.bytes_written,
                      time.perf_counter() - start)


def _require_finite(result: ImageMasks, sample: Sample, cfg: Config) -> None:
    """Refuse to write NaN or infinite SAM outputs: they would poison every later step."""
    bad = [name for name in ("tokens", "iou", "stability", "image_embedding")
           if (values := getattr(result, name)) is not None and not np.isfinite(values).all()]
    if bad:
        raise ModelOutputError(
            f"SAM ({cfg.models.sam.variant}, {cfg.models.sam.checkpoint or 'no checkpoint'}) "
            f"gave non-finite {', '.join(bad)} for image {sample.name!r} ({sample.image_url}) "
            f"at base.dtype {cfg.base.dtype}: nothing of this shard was written. SAM at "
            f"{FLOAT16_OVERFLOW}; else check the checkpoint file (a re-download if it is "
            "damaged).")


def summarize(plan_: EmbedPlan, stats: list[ShardStats], seconds: float) -> dict[str, object]:
    """Counts and throughput of a run, plus the totals now in the output folder."""
    images = sum(s.images for s in stats)
    return {
        "output": plan_.out,
        "source": plan_.source,
        "images_in_dataset": plan_.total,
        "images_skipped": plan_.present,
        "images_embedded": images,
        "masks_written": sum(s.masks for s in stats),
        "bytes_written": sum(s.bytes_written for s in stats),
        "shards_written": len(stats),
        "seconds": round(seconds, 3),
        "images_per_second": round(images / seconds, 4) if seconds > 0 and images else 0.0,
        "total_masks_in_output": store.count_rows(plan_.out),
        "shards": [asdict(s) for s in stats],
    }


def version_output(cfg: Config, ws: Workspace, out: str, images: int,
                   source: str) -> str | None:
    """``dvc add`` + commit + push the output folder (lineage: embedded from the images at
    ``source``); None if it lies outside the workspace."""
    path = Path(out)
    if "://" in out or not path.resolve().is_relative_to(ws.root.resolve()):
        return None
    rel = path.resolve().relative_to(ws.root.resolve()).as_posix()
    record = lineage.make_record("embeddings", cfg,
                                 [lineage.data_parent(ws.root, source, "images")])
    return version_path(ws, rel, f"embeddings: {path.name} ({images} images)", lineage=record)
