"""The synthesize pipeline as library calls: plan chunks, generate a chunk, finalise.

The flow (``flows/synthesize.py``) is a thin sequence of these; they also run without
Prefect. Components are injectable (``pipe``, ``scorer``) so tests can drive the same code
with tiny models or a stub scorer.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from segloop.config import Config
from segloop.data.settings_file import check_settings
from segloop.models.clip import ImageTextScorer, load_clip
from segloop.models.diffusion import LoadedPipeline, load_pipeline
from segloop.synth import store
from segloop.synth.generate import GenerationSettings, run_batch
from segloop.synth.prompts import Job, check_classes, jobs_for, label_texts
from segloop.versioning import Workspace, lineage, version_path


@dataclass(frozen=True)
class Chunk:
    """One task: ``jobs`` (all of one label) still to generate."""

    label: str
    number: int
    jobs: tuple[Job, ...]


@dataclass
class SynthPlan:
    out: str
    total: int
    present: int
    chunks: list[Chunk]
    swept: list[str]

    @property
    def todo(self) -> int:
        return sum(len(c.jobs) for c in self.chunks)


@dataclass(frozen=True)
class ChunkStats:
    label: str
    chunk: int
    accepted: int
    rejected: int
    seconds: float


def output_dir(cfg: Config, workspace_root: str | Path) -> str:
    """``data/synthetic/<synth.dataset>`` inside the workspace."""
    return str(Path(workspace_root) / "data" / "synthetic" / cfg.synth.dataset)


def settings(cfg: Config) -> dict[str, Any]:
    """What decides an image's pixels; a dataset folder keeps one set of these."""
    d, s = cfg.models.diffusion, cfg.synth
    return {"model_id": d.model_id, "revision": d.revision, "scheduler": d.scheduler,
            "tiny_seed": d.seed if d.model_id in ("tiny", "random-sd1") else None,
            "steps": s.steps, "guidance": s.guidance, "height": s.height, "width": s.width,
            "negative_prompt": s.negative_prompt, "seed": cfg.base.seed,
            "clip_model": cfg.models.clip.model_id,
            "filter_threshold": s.filter_threshold if cfg.models.clip.model_id else None}


def generation_settings(cfg: Config) -> GenerationSettings:
    d, s = cfg.models.diffusion, cfg.synth
    return GenerationSettings(steps=s.steps, guidance=s.guidance, height=s.height,
                              width=s.width, scheduler=d.scheduler, model_id=d.model_id,
                              revision=d.revision, threshold=s.filter_threshold)


def plan(cfg: Config, out: str) -> SynthPlan:
    """Check the config, record/check settings, and cut the missing jobs into chunks."""
    check_classes(cfg.synth)
    swept = store.sweep(out)
    check_settings(out, settings(cfg), store.SETTINGS_FILE, "synth.dataset")
    done = store.done_jobs(out)
    chunks: list[Chunk] = []
    total = 0
    for k in range(len(cfg.synth.classes)):
        jobs = jobs_for(cfg.synth, k, cfg.base.seed)
        total += len(jobs)
        todo = [j for j in jobs if (j.label, j.index) not in done]
        size = cfg.synth.chunk_size
        for n, i in enumerate(range(0, len(todo), size)):
            chunks.append(Chunk(jobs[0].label, n, tuple(todo[i : i + size])))
    present = total - sum(len(c.jobs) for c in chunks)
    return SynthPlan(out, total, present, chunks, swept)


_LOADING = threading.RLock()


@lru_cache(maxsize=1)
def _pipeline(model_id: str, revision: str | None, local_files_only: bool, scheduler: str,
              device: str, dtype: str, slicing: bool, tiling: bool, offload: bool,
              seed: int) -> LoadedPipeline:
    return load_pipeline(model_id, revision=revision, local_files_only=local_files_only,
                         scheduler=scheduler, device=device, dtype=dtype,
                         attention_slicing=slicing, vae_tiling=tiling, cpu_offload=offload,
                         seed=seed)


def release_models() -> None:
    """Drop the pipeline and CLIP scorer loaded by :func:`pipeline` / :func:`scorer` (their
    memory, GPU memory included, is freed once nothing else holds them)."""
    _pipeline.cache_clear()
    _scorer.cache_clear()


def pipeline(cfg: Config) -> LoadedPipeline:
    """The configured pipeline, loaded once per process."""
    d = cfg.models.diffusion
    with _LOADING:  # chunks starting together in threads load it once
        return _pipeline(d.model_id, d.revision, d.local_files_only, d.scheduler,
                         cfg.base.device, cfg.base.dtype, d.attention_slicing, d.vae_tiling,
                         d.cpu_offload, d.seed)


@lru_cache(maxsize=1)
def _scorer(model_id: str, local_files_only: bool, device: str) -> ImageTextScorer:
    return load_clip(model_id, local_files_only=local_files_only, device=device)


def scorer(cfg: Config) -> ImageTextScorer | None:
    """The CLIP filter's scorer, or None when no CLIP model is configured."""
    c = cfg.models.clip
    if not c.model_id:
        return None
    with _LOADING:
        return _scorer(c.model_id, c.local_files_only, cfg.base.device)


def generate_chunk(cfg: Config, out: str, chunk: Chunk, *, pipe: Any = None,
                   scorer_: ImageTextScorer | None = None, progress: bool = True
                   ) -> ChunkStats:
    """Generate ``chunk`` batch by batch; each batch is committed on its own. Jobs already
    committed (by this chunk's earlier, failed try) are skipped, so a retry only makes what
    is missing."""
    start = time.perf_counter()
    done = store.done_jobs(out)
    chunk = Chunk(chunk.label, chunk.number,
                  tuple(j for j in chunk.jobs if (j.label, j.index) not in done))
    pipe = pipe if pipe is not None else pipeline(cfg).pipe
    scorer_ = scorer_ if scorer_ is not None else scorer(cfg)
    texts = label_texts(cfg.synth)
    s = generation_settings(cfg)
    accepted = rejected = 0
    bar = tqdm(total=len(chunk.jobs), desc=f"{chunk.label} chunk {chunk.number}",
               unit="img", disable=not progress, leave=False)
    size = cfg.synth.batch_size
    for i in range(0, len(chunk.jobs), size):
        result = run_batch(pipe, chunk.jobs[i : i + size], out, s, scorer_, texts)
        accepted, rejected = accepted + result.accepted, rejected + result.rejected
        bar.update(result.accepted + result.rejected)
    bar.close()
    return ChunkStats(chunk.label, chunk.number, accepted, rejected,
                      time.perf_counter() - start)


def finalize(cfg: Config, out: str) -> dict[str, Any]:
    """Compact the parts; per-label counts of accepted and rejected images."""
    counts = store.compact(out)
    manifest = store.read_manifest(out)
    rejects = store.read_rejects(out)
    kept = Counter(manifest.column("label").to_pylist())
    dropped = Counter(rejects.column("label").to_pylist())
    per_class = [{"label": c.label, "names": ", ".join(c.names), "images": kept[c.label],
                  "rejected": dropped[c.label]} for c in cfg.synth.classes]
    return {"images": counts["manifest"], "rejected": counts["rejects"],
            "per_class": per_class}


def version_output(cfg: Config, ws: Workspace, out: str, images: int) -> str:
    """``dvc add`` + commit + push the dataset folder (lineage: the config, whose hash
    covers the model, prompts and seeds); returns the commit sha."""
    rel = Path(out).resolve().relative_to(ws.root.resolve()).as_posix()
    record = lineage.make_record("synthetic dataset", cfg, [])
    return version_path(ws, rel, f"synthetic: {Path(out).name} ({images} images)",
                        lineage=record)


def summarize(p: SynthPlan, stats: list[ChunkStats], final: dict[str, Any], seconds: float
              ) -> dict[str, Any]:
    made = sum(s.accepted + s.rejected for s in stats)
    return {"output": p.out, "jobs": p.total, "skipped": p.present, "generated": made,
            "seconds": round(seconds, 3),
            "images_per_second": round(made / seconds, 4) if seconds > 0 and made else 0.0,
            **final, "chunks": [asdict(s) for s in stats]}
