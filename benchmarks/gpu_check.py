"""GPU check: what a CPU-only machine cannot show, in one short run on one CUDA GPU.

Run it as one prepared command on a GPU lease (sized to finish well inside 8 minutes on
one H100/H200; no part starts after the time budget, 420 s by default, see below)::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_check.py
    .venv/bin/python benchmarks/gpu_check.py --budget-s 300 --only precision embed_shard
    .venv/bin/python benchmarks/gpu_check.py --dry-run --out /tmp/gc.json   # CPU, tiny models

Every model has random weights (nothing is downloaded: timings and numerics do not need
trained weights, and these machines are offline). Parts, in order:

1. ``device``: ``segloop.devices.pick_device("auto")`` picks CUDA; torch, CUDA and cuDNN
   versions, the GPU's name, compute capability and total memory.
2. ``precision``: float16 and bfloat16 against float32 (TF32 off for the reference) on
   full-size models: SAM ViT-B's image encoder on a 1024x1024 input (``build_sam``), one
   Stable Diffusion 1.x UNet forward at a 64x64 latent conditioned on the pipeline's own
   text encoder output (``build_random_pipeline("sd1")``) and CLIP ViT-B/32 image and text
   features (``transformers.CLIPModel(CLIPConfig())``). Per model and dtype: all outputs
   finite, max abs difference and relative error ``||a - b|| / ||b||`` against float32,
   median seconds per forward, and a pass flag (:data:`THRESHOLDS`).
3. ``embed_shard``: the embed flow's library steps (``segloop.embed.steps``: plan, embed
   one shard) on 8 generated 256x320 images with SAM ViT-B loaded through the real loader
   (the random model's state dict saved to a temporary checkpoint), in float32 and
   float16: seconds, images per second and peak CUDA memory (a 1-image warm-up shard first).
4. ``synthesize_batch``: the synthesize flow's library steps (``segloop.synth.steps``: plan,
   generate one chunk) with ``random-sd1`` in float16, batches of 4 at 512x512, 10 steps,
   guidance 7.5: a warm-up chunk, then one measured chunk of one batch.
5. ``al_round``: one active-learning round through ``segloop.active.loop`` (prepare, initial
   selection, simulated labels, commit, train, evaluate, score and select) on a generated
   CamVid folder (40 train, 10 val, 96x128) in a temporary git+DVC workspace, with the
   default model (LR-ASPP) for ``--al-steps`` steps: seconds per training step, evaluation
   and scoring seconds, peak memory and the round's val mIoU (recorded, not judged).

Robustness: each part (and each model of ``precision``) runs in its own try/except; an
error is recorded under ``errors`` (type, message and the last traceback lines, with
machine paths replaced) and the run goes on. A part starts only while the time budget
(``--budget-s``) is not used up; later parts are listed under ``skipped``. The JSON is
rewritten atomically (temporary name + ``os.replace``) after every part, so a killed run
keeps what it measured. Progress lines go to stdout as it goes.

Output: ``benchmarks/results/gpu_check.json`` (figures and settings only, no machine paths)
and ``gpu_check.png`` beside it (seconds and peak memory per part); ``--out`` elsewhere.

Exit codes: 0 every part that ran recorded no error; 1 some part recorded an error (the
JSON is still complete); 2 no CUDA device (one line is printed and nothing is written).
``--dry-run`` runs every part on the CPU with the tiny models and tiny sizes (float16
entries are recorded as skipped: float16 needs CUDA; bfloat16 is compared on CPU), to
check the code paths; it writes to ``--out`` (with the plot) or, without ``--out``, to a
temporary file it names (without the plot), never to ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Offline before transformers / diffusers / DVC are imported (values already set win).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DEFAULT_OUT = RESULTS / "gpu_check.json"
PRECISION_MODELS: tuple[str, ...] = ("sam", "sd1_unet", "clip")
THRESHOLDS: dict[str, float] = {"float16": 0.05, "bfloat16": 0.1}
"""A low-precision output passes when finite with relative error below this."""
EXIT_OK, EXIT_ERRORS, EXIT_NO_CUDA = 0, 1, 2
NO_CUDA_LINE = ("gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing to "
                "measure (exit 2; --dry-run exercises the code on the CPU)")
GIB = 2**30


@dataclass(frozen=True)
class Sizes:
    """Model variants and problem sizes of one run (full size on CUDA, tiny in a dry run)."""

    sam_variant: str
    sam_input: int
    sd_model: str
    clip: str
    clip_batch: int
    embed_images: int
    embed_hw: tuple[int, int]
    embed_points_per_side: int
    embed_dtypes: tuple[str, ...]
    synth_size: int
    synth_batch: int
    synth_steps: int
    synth_dtype: str
    al_splits: dict[str, int]
    al_hw: tuple[int, int]
    al_steps: int

    @classmethod
    def full(cls, al_steps: int, synth_steps: int) -> Sizes:
        """Full-size models and the sizes of the module docstring (CUDA runs)."""
        return cls("vit_b", 1024, "random-sd1", "CLIPConfig() (ViT-B/32)", 2, 8, (256, 320),
                   10, ("float32", "float16"), 512, 4, synth_steps, "float16",
                   {"train": 40, "val": 10}, (96, 128), al_steps)

    @classmethod
    def tiny(cls) -> Sizes:
        """Tiny models and sizes for ``--dry-run`` on the CPU (seconds per part)."""
        return cls("tiny", 128, "tiny", "build_tiny_clip", 2, 2, (24, 32), 4, ("float32",),
                   32, 2, 2, "float32", {"train": 10, "val": 4}, (24, 32), 3)


@dataclass
class Run:
    """State shared by the parts: options, device, scratch folder and the report so far."""

    args: argparse.Namespace
    device: torch.device
    sizes: Sizes
    tmp: Path
    out: Path
    plot: bool
    start: float = field(default_factory=time.perf_counter)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def over_budget(self) -> bool:
        return self.elapsed() >= self.args.budget_s

    def say(self, message: str) -> None:
        """One progress line with the seconds since the start."""
        print(f"gpu_check [{self.elapsed():6.1f} s] {message}", flush=True)

    def scrub(self, text: str) -> str:
        """``text`` with the scratch folder, the repository and the home folder replaced."""
        for path, name in ((self.tmp, "<tmp>"), (ROOT, "<repo>"), (Path.home(), "~")):
            text = text.replace(str(path), name)
        return text

    def record_error(self, key: str, err: BaseException) -> dict[str, Any]:
        """Put ``err`` under ``errors[key]`` and return it (for the part's own entry)."""
        frames = traceback.extract_tb(err.__traceback__)[-8:]
        entry = {"error": self.scrub(f"{type(err).__name__}: {err}")[:2000],
                 "where": [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames]}
        self.report["errors"][key] = entry
        self.say(f"{key}: ERROR {entry['error'][:300]}")
        return entry

    def skip(self, key: str, reason: str) -> None:
        self.report["skipped"].append({"part": key, "reason": reason})
        self.say(f"{key}: skipped ({reason})")

    def flush(self) -> None:
        """Write the report atomically (temporary name, then ``os.replace``)."""
        self.report["total_seconds"] = round(self.elapsed(), 3)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(f".{self.out.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.report, indent=2, allow_nan=False) + "\n")
        os.replace(tmp, self.out)


# --- measuring helpers -------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    """Collect garbage and return cached CUDA blocks, so the next part starts clean."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _reset_peak(device: torch.device) -> None:
    _free(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    """``torch.cuda.max_memory_allocated`` since the last reset, in GiB (None on CPU)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / GIB, 4)


def _num(x: float) -> float | None:
    """A JSON-safe float with 6 significant digits (None for NaN / inf)."""
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


@contextmanager
def _no_tf32() -> Iterator[None]:
    """float32 references in true float32: TF32 off for matmuls and cuDNN convolutions.

    Uses the legacy ``allow_tf32`` flags; if the process already mixed them with the newer
    ``fp32_precision`` API (reading the legacy flags then raises), sets that API instead.
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    try:
        saved: tuple[Any, ...] = (matmul.allow_tf32, cudnn.allow_tf32)
    except RuntimeError:
        saved = ()
    if saved:
        matmul.allow_tf32 = cudnn.allow_tf32 = False
    else:
        new = (matmul.fp32_precision, cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision)
        matmul.fp32_precision = cudnn.conv.fp32_precision = cudnn.rnn.fp32_precision = "ieee"
    try:
        yield
    finally:
        if saved:
            matmul.allow_tf32, cudnn.allow_tf32 = saved
        else:
            matmul.fp32_precision, cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = new


def _timed(fn: Callable[[], dict[str, torch.Tensor]], device: torch.device, repeats: int
           ) -> tuple[dict[str, torch.Tensor], list[float]]:
    """One warm-up call, then ``repeats`` timed calls; the last outputs and the seconds."""
    with torch.inference_mode():
        out = fn()
        _sync(device)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn()
            _sync(device)
            seconds.append(time.perf_counter() - start)
    return out, seconds


def compare(out: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Per output: finite, max abs difference and ``||a - b|| / ||b||`` against ``ref``;
    ``rel_err`` / ``max_abs_diff`` at the top are the worst over the outputs."""
    per: dict[str, Any] = {}
    for name, b in ref.items():
        a, b = out[name].detach().float().cpu(), b.detach().float().cpu()
        finite = bool(torch.isfinite(a).all())
        diff = a - b
        per[name] = {"shape": list(a.shape), "finite": finite,
                     "max_abs_diff": _num(diff.abs().max()) if finite else None,
                     "rel_err": _num(diff.norm() / b.norm().clamp_min(1e-30)) if finite
                     else None}
    finite = all(p["finite"] for p in per.values())
    rels = [p["rel_err"] for p in per.values()]
    diffs = [p["max_abs_diff"] for p in per.values()]
    return {"finite": finite,
            "rel_err": max(rels) if finite and None not in rels else None,
            "max_abs_diff": max(diffs) if finite and None not in diffs else None,
            "outputs": per}


# --- part 1: device ----------------------------------------------------------------------


def part_device(run: Run) -> dict[str, Any]:
    """What ``pick_device("auto")`` chose and what the GPU is."""
    from segloop.devices import pick_device

    picked = pick_device("auto")
    info: dict[str, Any] = {"pick_device_auto": picked.type, "used": run.device.type,
                            "torch": torch.__version__, "cuda": torch.version.cuda,
                            "cudnn": torch.backends.cudnn.version()}
    if run.cuda:
        if picked.type != "cuda":
            raise RuntimeError(f"pick_device('auto') returned {picked.type}, not cuda")
        props = torch.cuda.get_device_properties(run.device)
        info.update({
            "name": props.name, "capability": f"{props.major}.{props.minor}",
            "total_memory_gib": round(props.total_memory / GIB, 2),
            "multiprocessors": props.multi_processor_count,
            "device_count": torch.cuda.device_count(),
            "bf16_supported": torch.cuda.is_bf16_supported(), **_tf32_flags()})
    else:
        info["name"] = "cpu"
    return info


def _tf32_flags() -> dict[str, Any]:
    """The process's TF32 settings (used by every part except the precision references)."""
    try:
        return {"tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    except RuntimeError:  # legacy and new TF32 APIs were mixed: report the new one
        return {"tf32_matmul": torch.backends.cuda.matmul.fp32_precision,
                "tf32_cudnn": torch.backends.cudnn.conv.fp32_precision}


# --- part 2: precision -------------------------------------------------------------------

Forward = Callable[[torch.nn.Module, torch.dtype], dict[str, torch.Tensor]]


def _sam_case(run: Run) -> tuple[torch.nn.Module, Forward, dict[str, Any]]:
    """SAM's image encoder and a forward on one random (already normalised) image."""
    from segloop.models.sam import build_sam

    sam = build_sam(run.sizes.sam_variant, seed=run.args.seed)
    encoder = sam.image_encoder
    size = int(encoder.img_size)
    gen = torch.Generator().manual_seed(run.args.seed)
    image = torch.randn(1, 3, size, size, generator=gen).to(run.device)

    def forward(module: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        return {"image_embedding": module(image.to(dtype))}

    return encoder, forward, {"model": f"build_sam({run.sizes.sam_variant!r}).image_encoder",
                              "input": [1, 3, size, size]}


def _sd_case(run: Run) -> tuple[torch.nn.Module, Forward, dict[str, Any]]:
    """SD's UNet and one forward at its native latent size, conditioned on the pipeline's
    text encoder output for a prompt (computed once in float32, cast per dtype)."""
    from segloop.models.diffusion import build_random_pipeline, build_tiny_pipeline

    tok_dir = run.tmp / "tokenizer"
    if run.sizes.sd_model == "tiny":
        pipe = build_tiny_pipeline(run.args.seed, tok_dir)
    else:
        pipe = build_random_pipeline("sd1", seed=run.args.seed, tokenizer_dir=tok_dir)
    tokenizer = pipe.tokenizer
    ids = tokenizer(["a photo of a forklift"], padding="max_length", truncation=True,
                    max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    with torch.inference_mode():
        text = pipe.text_encoder.to(run.device)(ids.to(run.device))[0].clone()
    unet = pipe.unet
    del pipe
    cfg = unet.config
    latent = int(cfg.sample_size)
    gen = torch.Generator().manual_seed(run.args.seed)
    latents = torch.randn(1, int(cfg.in_channels), latent, latent, generator=gen).to(run.device)
    timestep = torch.tensor([500], device=run.device)

    def forward(module: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        return {"noise_pred": module(latents.to(dtype), timestep,
                                     encoder_hidden_states=text.to(dtype)).sample}

    return unet, forward, {"model": f"{run.sizes.sd_model} UNet2DConditionModel",
                           "latent": [1, int(cfg.in_channels), latent, latent],
                           "encoder_hidden_states": list(text.shape), "timestep": 500}


def _clip_case(run: Run) -> tuple[torch.nn.Module, Forward, dict[str, Any]]:
    """CLIP image and text features (projected, as ``ClipScorer`` computes them) of random
    pixels and random token ids framed by the config's BOS and EOS."""
    from transformers import CLIPConfig, CLIPModel

    if run.sizes.clip == "build_tiny_clip":
        from segloop.models.clip import build_tiny_clip

        model, _ = build_tiny_clip(run.args.seed, run.tmp / "tokenizer")
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run.args.seed)
            model = CLIPModel(CLIPConfig()).eval()
    vc, tc = model.config.vision_config, model.config.text_config
    n, length = run.sizes.clip_batch, int(tc.max_position_embeddings)
    gen = torch.Generator().manual_seed(run.args.seed)
    pixels = torch.randn(n, 3, vc.image_size, vc.image_size, generator=gen).to(run.device)
    low = min(int(tc.bos_token_id), int(tc.eos_token_id))
    ids = torch.randint(0, low, (n, length), generator=gen)
    ids[:, 0], ids[:, -1] = int(tc.bos_token_id), int(tc.eos_token_id)
    ids = ids.to(run.device)
    mask = torch.ones_like(ids)

    def forward(module: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        image = module.vision_model(pixel_values=pixels.to(dtype)).pooler_output
        text = module.text_model(input_ids=ids, attention_mask=mask).pooler_output
        return {"image_features": module.visual_projection(image),
                "text_features": module.text_projection(text)}

    return model, forward, {"model": run.sizes.clip, "images": [n, 3, vc.image_size,
                                                                  vc.image_size],
                            "tokens": [n, length]}


CASES: dict[str, Callable[[Run], tuple[torch.nn.Module, Forward, dict[str, Any]]]] = {
    "sam": _sam_case, "sd1_unet": _sd_case, "clip": _clip_case}


def precision_one(run: Run, name: str) -> dict[str, Any]:
    """float32 reference, then float16 (CUDA only) and bfloat16 copies of one model."""
    _reset_peak(run.device)
    start = time.perf_counter()
    module, forward, info = CASES[name](run)
    module = module.to(run.device).eval()
    info["parameters_m"] = round(sum(p.numel() for p in module.parameters()) / 1e6, 2)
    info["build_seconds"] = round(time.perf_counter() - start, 3)
    repeats = run.args.repeats
    with _no_tf32():
        ref, seconds = _timed(lambda: forward(module, torch.float32), run.device, repeats)
    ref = {k: v.detach().float().clone() for k, v in ref.items()}
    dtypes: dict[str, Any] = {"float32": {
        "seconds_per_forward": _num(statistics.median(seconds)),
        "seconds": [_num(s) for s in seconds],
        "finite": all(bool(torch.isfinite(v).all()) for v in ref.values())}}
    for dtype_name, dtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        if dtype is torch.float16 and not run.cuda:
            dtypes[dtype_name] = {"skipped": "fp16 needs CUDA"}
            continue
        low = copy.deepcopy(module).to(dtype=dtype)
        out, seconds = _timed(lambda low=low, dtype=dtype: forward(low, dtype), run.device,
                              repeats)
        stats = compare(out, ref)
        threshold = THRESHOLDS[dtype_name]
        dtypes[dtype_name] = {
            "seconds_per_forward": _num(statistics.median(seconds)),
            "seconds": [_num(s) for s in seconds],
            "speedup_vs_float32": _num(dtypes["float32"]["seconds_per_forward"]
                                       / max(statistics.median(seconds), 1e-12)),
            **stats,
            "pass": bool(stats["finite"] and stats["rel_err"] is not None
                         and stats["rel_err"] < threshold)}
        del low, out
        _free(run.device)
    info.update(dtypes=dtypes, peak_memory_gib=_peak_gib(run.device),
                seconds=round(time.perf_counter() - start, 3))
    return info


def part_precision(run: Run) -> dict[str, Any]:
    """Each model in its own try/except (errors under ``precision.<model>``)."""
    result: dict[str, Any] = {"thresholds_rel_err": dict(THRESHOLDS),
                              "reference": "float32 with TF32 off",
                              "repeats": run.args.repeats, "models": {}}
    for name in PRECISION_MODELS:
        key = f"precision.{name}"
        if run.over_budget():
            run.skip(key, f"time budget of {run.args.budget_s:g} s used up")
            continue
        run.say(f"{key} ...")
        try:
            entry = precision_one(run, name)
            flags = {d: v.get("pass") for d, v in entry["dtypes"].items() if "pass" in v}
            rels = {d: v.get("rel_err") for d, v in entry["dtypes"].items() if "pass" in v}
            run.say(f"{key}: rel err {rels}, pass {flags}")
        except Exception as err:  # noqa: BLE001  (recorded; the other models go on)
            entry = run.record_error(key, err)
        result["models"][name] = entry
        _free(run.device)
        run.report["parts"]["precision"] = result
        run.flush()
    passes = [v["pass"] for m in result["models"].values() for v in m.get("dtypes", {}).values()
              if isinstance(v, dict) and "pass" in v]
    result["all_pass"] = bool(passes) and all(passes)
    return result


# --- part 3: embed_shard -----------------------------------------------------------------


def _embed_one(run: Run, root: Path, checkpoint: Path | None, dtype: str) -> dict[str, Any]:
    """Load SAM through the embed steps' cached loader, embed a 1-image warm-up shard, then
    the measured shard of every image; the loader's cache is cleared afterwards."""
    from segloop.config import parse_config
    from segloop.embed import steps

    s = run.sizes

    def config(limit: int | None) -> Any:
        return parse_config({
            "base": {"device": run.device.type, "dtype": dtype, "seed": run.args.seed},
            "data": {"root": str(root), "split": "train"},
            "models": {"sam": {"variant": s.sam_variant, "seed": run.args.seed,
                               "checkpoint": str(checkpoint) if checkpoint else None}},
            "embed": {"shard_size": s.embed_images, "compile": False, "limit": limit,
                      "points_per_side": s.embed_points_per_side, "version": False}})

    _reset_peak(run.device)
    try:
        cfg = config(None)
        start = time.perf_counter()
        steps.embedder(cfg, False)  # load once (cached per process)
        _sync(run.device)
        load_seconds = time.perf_counter() - start
        warm_cfg = config(1)
        warm_out = str(run.tmp / f"embed_warm_{dtype}")
        warm = steps.plan(warm_cfg, steps.open_input(warm_cfg, str(root)), warm_out)
        warm_stats = steps.embed_shard(warm_cfg, warm_out, warm.shards[0], progress=False)
        out = str(run.tmp / f"embed_{dtype}")
        plan = steps.plan(cfg, steps.open_input(cfg, str(root)), out)
        _sync(run.device)
        stats = steps.embed_shard(cfg, out, plan.shards[0], progress=False)
        _sync(run.device)
        peak = _peak_gib(run.device)
    finally:
        steps.release_models()  # drop the model: the next dtype / part starts clean
        _free(run.device)
    return {"load_seconds": _num(load_seconds), "warmup_seconds": _num(warm_stats.seconds),
            "seconds": _num(stats.seconds), "images": stats.images, "masks": stats.masks,
            "bytes_written": stats.bytes_written,
            "seconds_per_image": _num(stats.seconds / max(stats.images, 1)),
            "images_per_second": _num(stats.images / max(stats.seconds, 1e-12)),
            "peak_memory_gib": peak}


def part_embed_shard(run: Run) -> dict[str, Any]:
    """One shard through ``segloop.embed.steps`` per dtype (errors under
    ``embed_shard.<dtype>``), SAM read from a checkpoint by the library's own loader."""
    from segloop.models.sam import build_sam
    from segloop.testing import write_camvid

    s = run.sizes
    root = run.tmp / "embed_data"
    write_camvid(str(root), {"train": s.embed_images}, hw=s.embed_hw, seed=run.args.seed)
    checkpoint = None
    if s.sam_variant != "tiny":  # the released variants load only from a checkpoint file
        checkpoint = run.tmp / f"sam_{s.sam_variant}_random.pth"
        torch.save(build_sam(s.sam_variant, seed=run.args.seed).state_dict(), checkpoint)
    result: dict[str, Any] = {"variant": s.sam_variant, "images": s.embed_images,
                              "image_hw": list(s.embed_hw),
                              "points_per_side": s.embed_points_per_side,
                              "checkpoint": "random weights saved to a temporary file"
                              if checkpoint else None, "dtypes": {}}
    for dtype in s.embed_dtypes:
        key = f"embed_shard.{dtype}"
        if run.over_budget():
            run.skip(key, f"time budget of {run.args.budget_s:g} s used up")
            continue
        try:
            entry = _embed_one(run, root, checkpoint, dtype)
            run.say(f"{key}: {entry['images']} images in {entry['seconds']} s, peak "
                    f"{entry['peak_memory_gib']} GiB")
        except Exception as err:  # noqa: BLE001  (recorded; the other dtype goes on)
            entry = run.record_error(key, err)
        result["dtypes"][dtype] = entry
        run.report["parts"]["embed_shard"] = result
        run.flush()
    peaks = [d["peak_memory_gib"] for d in result["dtypes"].values()
             if d.get("peak_memory_gib") is not None]
    result["peak_memory_gib"] = max(peaks) if peaks else None
    return result


# --- part 4: synthesize_batch ------------------------------------------------------------


def part_synthesize_batch(run: Run) -> dict[str, Any]:
    """Two chunks of one batch each through ``segloop.synth.steps``: warm-up, measured."""
    from segloop.config import parse_config
    from segloop.synth import steps

    s = run.sizes
    cfg = parse_config({
        "base": {"device": run.device.type, "dtype": s.synth_dtype, "seed": run.args.seed},
        "models": {"diffusion": {"model_id": s.sd_model, "seed": run.args.seed}},
        "synth": {"dataset": "gpu_check", "classes": ["forklift"],
                  "images_per_class": 2 * s.synth_batch, "batch_size": s.synth_batch,
                  "chunk_size": s.synth_batch, "steps": s.synth_steps, "guidance": 7.5,
                  "height": s.synth_size, "width": s.synth_size, "version": False}})
    _reset_peak(run.device)
    try:
        start = time.perf_counter()
        steps.pipeline(cfg)  # build + move to the device once (cached per process)
        _sync(run.device)
        load_seconds = time.perf_counter() - start
        out = str(run.tmp / "synth")
        plan = steps.plan(cfg, out)
        if len(plan.chunks) != 2:
            raise RuntimeError(f"expected 2 chunks of {s.synth_batch} jobs, got "
                               f"{[len(c.jobs) for c in plan.chunks]}")
        warm = steps.generate_chunk(cfg, out, plan.chunks[0], progress=False)
        _sync(run.device)
        stats = steps.generate_chunk(cfg, out, plan.chunks[1], progress=False)
        _sync(run.device)
        peak = _peak_gib(run.device)
    finally:
        steps.release_models()  # drop the pipeline before the next part
        _free(run.device)
    images = stats.accepted + stats.rejected
    result = {"model": s.sd_model, "dtype": s.synth_dtype, "batch": s.synth_batch,
              "size": s.synth_size, "steps": s.synth_steps, "guidance": 7.5,
              "load_seconds": _num(load_seconds), "warmup_seconds": _num(warm.seconds),
              "seconds": _num(stats.seconds), "images": images,
              "seconds_per_image": _num(stats.seconds / max(images, 1)),
              "seconds_per_step": _num(stats.seconds / s.synth_steps),
              "peak_memory_gib": peak}
    return result


# --- part 5: al_round --------------------------------------------------------------------


def part_al_round(run: Run) -> dict[str, Any]:
    """Round 0 (initial selection, simulated labels, commit), its model trained and
    evaluated, then round 1 scored and selected, through ``segloop.active.loop``."""
    from segloop.active import loop
    from segloop.config import parse_config
    from segloop.testing import write_camvid

    s = run.sizes
    root, base = run.tmp / "al_data", run.tmp / "al"
    write_camvid(str(root), s.al_splits, hw=s.al_hw, seed=run.args.seed)
    cfg = parse_config({
        "base": {"device": run.device.type, "seed": run.args.seed,
                 "paths": {"workspace": str(base / "ws"), "dvc_remote": str(base / "remote"),
                           "reports": str(base / "reports"),
                           "prefect_home": str(base / "prefect")}},
        "data": {"root": str(root)},
        "train": {"steps": s.al_steps},
        "active": {"image_size": list(s.al_hw), "rounds": 1, "initial_fraction": 0.2,
                   "budget_per_round": 0.2}})
    ac = cfg.active
    _reset_peak(run.device)
    t0 = time.perf_counter()
    ctx = loop.prepare(cfg)
    selection, scores = loop.initial_selection(ctx)
    labels = loop.simulate_labels(ctx, selection)
    loop.commit_labels(ctx, 0, selection, labels, ac.initial_strategy, ac.annotator, scores)
    state = loop.label_state(ctx, 0)
    setup_seconds = time.perf_counter() - t0
    model, train_seconds = loop.train_after(ctx, 0, state, progress=False)
    _sync(run.device)
    t1 = time.perf_counter()
    metrics = loop.evaluate_model(ctx, model)
    _sync(run.device)
    eval_seconds = time.perf_counter() - t1
    picked, _, score_seconds = loop.score_and_select(ctx, model, state, 1, progress=False)
    _sync(run.device)
    result = {"model": cfg.train.model, "steps": cfg.train.steps,
              "batch_size": cfg.train.batch_size, "image_hw": list(s.al_hw),
              "pool": len(ctx.pool), "eval_images": len(ctx.eval.images),
              "strategy": ac.strategy, "initial_strategy": ac.initial_strategy,
              "round0_units": len(selection.units), "round1_units": len(picked.units),
              "setup_seconds": _num(setup_seconds), "train_seconds": _num(train_seconds),
              "seconds_per_step": _num(train_seconds / cfg.train.steps),
              "eval_seconds": _num(eval_seconds), "scoring_seconds": _num(score_seconds),
              "seconds": _num(time.perf_counter() - t0), "miou": _num(metrics.miou),
              "peak_memory_gib": _peak_gib(run.device)}
    del model, ctx
    _free(run.device)
    return result


PART_FUNCS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "precision": part_precision, "embed_shard": part_embed_shard,
    "synthesize_batch": part_synthesize_batch, "al_round": part_al_round}


# --- plot ----------------------------------------------------------------------------------


def plot(report: dict[str, Any], path: Path) -> None:
    """Two bar charts: seconds per part, peak CUDA memory per part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = report["parts"]
    names = [n for n in PART_FUNCS if n in parts and "error" not in parts[n]]
    seconds = [float(parts[n].get("part_seconds") or 0.0) for n in names]
    memory = []
    for n in names:
        entry = parts[n]
        if n == "precision":
            peaks = [m.get("peak_memory_gib") or 0.0 for m in entry.get("models", {}).values()]
            memory.append(max(peaks, default=0.0))
        else:
            memory.append(entry.get("peak_memory_gib") or 0.0)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.bar(names, seconds, color="tab:blue")
    ax1.set_ylabel("seconds")
    ax1.set_title("wall seconds per part (loading included)")
    ax2.bar(names, memory, color="tab:orange")
    ax2.set_ylabel("GiB (torch.cuda.max_memory_allocated)")
    ax2.set_title("peak CUDA memory per part")
    dry = report["settings"]["dry_run"]
    for ax, values in ((ax1, seconds), (ax2, [] if dry else memory)):
        ax.tick_params(axis="x", rotation=20)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=8)
    if dry:
        ax2.text(0.5, 0.5, "no CUDA memory on a CPU dry run", transform=ax2.transAxes,
                 ha="center")
    device = report.get("device", {}).get("name", "?")
    fig.suptitle(f"gpu_check on {device}" + (" (dry run, tiny models)" if dry else ""))
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="start no part after this many seconds (default 420)")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, tiny models and sizes: checks the code paths")
    p.add_argument("--out", type=Path, default=None,
                   help=f"JSON path (default {DEFAULT_OUT.relative_to(ROOT)}; a dry run "
                   "without --out writes a temporary file)")
    p.add_argument("--only", nargs="+", choices=list(PART_FUNCS), default=None,
                   help="run only these parts (device always runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=None,
                   help="timed forwards per dtype in precision (default 3; dry run 1)")
    p.add_argument("--al-steps", type=int, default=300,
                   help="training steps of al_round (CUDA runs; a dry run takes 3)")
    p.add_argument("--synth-steps", type=int, default=10,
                   help="denoising steps of synthesize_batch (CUDA runs; a dry run takes 2)")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.dry_run else 3
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the parts; return the exit code (module docstring)."""
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print(NO_CUDA_LINE, flush=True)
        return EXIT_NO_CUDA
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        if args.out is not None:
            out, make_plot = args.out.expanduser().resolve(), True
        elif args.dry_run:
            out = Path(tempfile.gettempdir()) / f"gpu_check_dry_{os.getpid()}.json"
            make_plot = False
        else:
            out, make_plot = DEFAULT_OUT, True
        device = torch.device("cpu") if args.dry_run else torch.device("cuda")
        sizes = Sizes.tiny() if args.dry_run else Sizes.full(args.al_steps, args.synth_steps)
        run = Run(args, device, sizes, tmp, out, make_plot)
        torch.manual_seed(args.seed)
        selected = [n for n in PART_FUNCS if args.only is None or n in args.only]
        run.report = {
            "settings": {"dry_run": args.dry_run, "budget_s": args.budget_s,
                         "seed": args.seed, "repeats": args.repeats, "parts": selected,
                         "thresholds_rel_err": dict(THRESHOLDS),
                         "sizes": {k: (list(v) if isinstance(v, tuple) else v)
                                   for k, v in vars(sizes).items()},
                         "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                         "torch_threads": torch.get_num_threads()},
            "device": {}, "parts": {}, "skipped": [], "errors": {}, "total_seconds": 0.0}
        run.say(f"{'dry run on CPU' if args.dry_run else 'CUDA'}; budget "
                f"{args.budget_s:g} s; parts: device, {', '.join(selected)}")
        try:
            run.report["device"] = part_device(run)
            run.say(f"device: {run.report['device'].get('name')}")
        except Exception as err:  # noqa: BLE001
            run.report["device"] = run.record_error("device", err)
        run.flush()
        for name in selected:
            if run.over_budget():
                run.skip(name, f"time budget of {args.budget_s:g} s used up")
                run.flush()
                continue
            run.say(f"{name} ...")
            part_start = time.perf_counter()
            try:
                entry = PART_FUNCS[name](run)
            except Exception as err:  # noqa: BLE001  (recorded; the next part goes on)
                entry = dict(run.record_error(name, err))
            entry["part_seconds"] = round(time.perf_counter() - part_start, 3)
            run.report["parts"][name] = entry
            run.say(f"{name}: {'failed' if name in run.report['errors'] else 'done'} in "
                    f"{entry['part_seconds']:.1f} s")
            _free(device)
            run.flush()
        if make_plot:
            try:
                plot(run.report, out.with_suffix(".png"))
            except Exception as err:  # noqa: BLE001
                run.record_error("plot", err)
                run.flush()
        errors = run.report["errors"]
        run.say(f"wrote {out if args.dry_run else out.name}"
                f"{' and its .png' if make_plot else ''}; {len(errors)} error(s), "
                f"{len(run.report['skipped'])} skipped")
        return EXIT_ERRORS if errors else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
