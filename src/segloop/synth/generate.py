"""Generate a batch of jobs with a diffusers pipeline, filter it, write PNGs and rows."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from PIL import Image

from segloop.data.fs import join
from segloop.data.ids import image_id
from segloop.data.images import write_bytes_atomic
from segloop.errors import FLOAT16_OVERFLOW, ModelOutputError
from segloop.faults import kill_point
from segloop.models.clip import ImageTextScorer
from segloop.synth import store
from segloop.synth.prompts import Job


@dataclass(frozen=True)
class GenerationSettings:
    """How every image of a run is made (recorded in each manifest row)."""

    steps: int
    guidance: float
    height: int | None
    width: int | None
    scheduler: str
    model_id: str
    revision: str | None
    threshold: float = 0.5


@dataclass(frozen=True)
class BatchResult:
    accepted: int
    rejected: int
    seconds: float


def generate_images(pipe: Any, jobs: Sequence[Job], s: GenerationSettings
                    ) -> tuple[np.ndarray, float]:
    """Run the pipeline once on ``jobs``: (B, H, W, 3) uint8 images and the seconds it took.

    Each image gets its own CPU ``torch.Generator`` seeded with its job's seed, so its
    initial noise does not depend on the batch it is in or on the device.
    """
    generators = [torch.Generator(device="cpu").manual_seed(j.seed) for j in jobs]
    kwargs: dict[str, Any] = {"prompt": [j.prompt for j in jobs], "generator": generators,
                              "num_inference_steps": s.steps, "guidance_scale": s.guidance,
                              "output_type": "np"}
    if any(j.negative_prompt for j in jobs):
        kwargs["negative_prompt"] = [j.negative_prompt for j in jobs]
    if s.height:
        kwargs["height"] = s.height
    if s.width:
        kwargs["width"] = s.width
    start = time.perf_counter()
    out = pipe(**kwargs)
    seconds = time.perf_counter() - start
    raw = np.asarray(out.images)
    _require_finite(raw, jobs)
    images = np.clip(np.round(raw * 255.0), 0, 255).astype(np.uint8)
    return images, seconds


def _require_finite(raw: np.ndarray, jobs: Sequence[Job]) -> None:
    """Refuse NaN or infinite pixels (B, H, W, 3): cast to uint8 they would silently become
    black or noise images in the dataset."""
    bad = [job for job, image in zip(jobs, raw, strict=True) if not np.isfinite(image).all()]
    if bad:
        first = bad[0]
        raise ModelOutputError(
            f"Stable Diffusion gave non-finite pixels for {len(bad)} of {len(jobs)} images "
            f"of this batch, first {first.label!r} #{first.index} (seed {first.seed}, prompt "
            f"{first.prompt!r}): nothing of this batch was written. The VAE at "
            f"{FLOAT16_OVERFLOW}.")


def encode_png(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes (no metadata: the same pixels give the same bytes)."""
    buf = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def run_batch(
    pipe: Any,
    jobs: Sequence[Job],
    out: str,
    s: GenerationSettings,
    scorer: ImageTextScorer | None = None,
    label_texts: Sequence[str] = (),
) -> BatchResult:
    """Generate, score (if a scorer is given), write the PNGs, then commit the batch's rows."""
    images, seconds = generate_images(pipe, jobs, s)
    probs = scorer.score(list(images), list(label_texts)) if scorer is not None else None
    created = datetime.now(UTC)
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for k, (job, image) in enumerate(zip(jobs, images, strict=True)):
        data = encode_png(image)
        iid = image_id(data)
        own = None if probs is None else float(probs[k, job.class_index])
        keep = own is None or own >= s.threshold
        rel = f"{job.label_dir}/{iid}.png"
        if not keep:
            rel = f"{store.REJECTS_DIR}/{rel}"
        write_bytes_atomic(join(out, rel), data)
        row = {
            "image_id": iid, "name": rel, "split": "synthetic", "source": "synthetic",
            "image_uri": rel, "label_uri": None, "height": image.shape[0],
            "width": image.shape[1], "n_bytes": len(data), "label": job.label,
            "class_name": job.name, "class_index": job.class_index, "index": job.index,
            "template": job.template, "prompt": job.prompt,
            "negative_prompt": job.negative_prompt, "seed": job.seed, "steps": s.steps,
            "guidance": s.guidance, "scheduler": s.scheduler, "model_id": s.model_id,
            "revision": s.revision, "seconds": seconds / len(jobs), "clip_score": own,
            "created_at": created,
        }
        if keep:
            accepted.append(row)
        else:
            assert probs is not None
            rejected.append({**row, "clip_scores": [float(v) for v in probs[k]]})
    kill_point("synth.batch.images")
    store.write_parts(out, jobs[0].label_dir, jobs[0].index, accepted, rejected)
    kill_point("synth.batch.part")
    return BatchResult(len(accepted), len(rejected), seconds)
