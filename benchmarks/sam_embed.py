"""Speed and memory of segloop's SAM extraction vs SAM's own tools (a benchmark, not a test).

Protocol (fixed):

- Model: SAM ViT-B architecture with random weights (seed 0), saved once to a checkpoint
  under ``benchmarks/.cache/`` and loaded by every run through its normal loader. Timing
  does not depend on weight values (no filtering step in segloop depends on them; SAM's
  automatic mask generator filters more or less, see the notes in the JSON).
- Images: CamVid ``train`` (480x360), in name order; one extra image first as warm-up (not
  timed: it pays for one-off costs such as oneDNN kernel selection or torch.compile).
- Each configuration runs in its own process, alone on the machine (2 cores), so its peak
  RSS is its own and runs do not compete for cores:

  * ``amg``: ``SamAutomaticMaskGenerator(sam, points_per_side=10).generate(image)`` with
    its defaults (its usual output: filtered, NMS'd masks as binary arrays).
  * ``encoder``: ``SamPredictor.set_image(image)``: resize, normalise, image encoder.
  * ``encoder_compiled``: the same with the image encoder wrapped in ``torch.compile``.
  * ``segloop``: ``segloop.embed.steps.embed_shard`` with the default config in eager mode
    (``embed.compile: false``): read the PNG, encode, 10x10 grid through the decoder,
    capture tokens, best masks upsampled to 480x360, RLE, Parquet shard written and
    renamed. ``segloop_compiled``: the same with ``embed.compile: true`` (what the default
    ``auto`` picks on CPU from 16 images on).
  * ``segloop`` on 10 and on 40 images: peak RSS as the image count grows.

Writes ``benchmarks/results/sam_embed.json`` (``seconds_per_image``, ``peak_rss_mb``,
ratios, targets) and ``sam_embed.png``. Each finished run is saved at once and skipped by
a rerun, so parts can be run separately (``--only``) and merge into the same JSON.

    python benchmarks/sam_embed.py              # everything (~30 min on 2 cores)
    python benchmarks/sam_embed.py --quick      # tiny SAM, 2 images: checks the script only
    python benchmarks/sam_embed.py --table      # print the README table from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = HERE / ".cache"
CAMVID = HERE.parents[1] / "shared" / "datasets" / "camvid" / "train"
MODES = ("amg", "encoder", "encoder_compiled", "segloop", "segloop_compiled")
LABELS = {"amg": "SAM automatic mask generator", "encoder": "SAM image encoder alone",
          "encoder_compiled": "image encoder, torch.compile",
          "segloop": "segloop, eager (`embed.compile: false`)",
          "segloop_compiled": "segloop, compiled (`true`; `auto` from 16 images)"}
TARGET_VS_AMG = 1.6
TARGET_VS_ENCODER = 1.15


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10, help="timed images per run")
    p.add_argument("--rss-images", type=int, nargs=2, default=[10, 40])
    p.add_argument("--only", nargs="*", choices=MODES, help="run only these modes")
    p.add_argument("--quick", action="store_true", help="tiny SAM, 2 images, separate JSON")
    p.add_argument("--redo", action="store_true", help="rerun finished parts")
    p.add_argument("--table", action="store_true", help="print the README table and exit")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--variant", default="vit_b", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---- child processes: one configuration each ------------------------------------------


def _image_paths(n: int) -> list[Path]:
    paths = sorted(CAMVID.glob("*.png"))
    if len(paths) < n + 1:
        raise SystemExit(f"need {n + 1} CamVid train images under {CAMVID}, found {len(paths)}")
    return paths[: n + 1]


def _checkpoint(variant: str) -> str | None:
    if variant == "tiny":
        return None
    path = CACHE / f"sam_{variant}_random_seed0.pth"
    if not path.is_file():
        import torch

        from segloop.models.sam import build_sam

        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(build_sam(variant, seed=0).state_dict(), tmp)
        tmp.replace(path)
    return str(path)


def _sam(variant: str):  # type: ignore[no-untyped-def]
    from segloop.models.sam import load_sam

    return load_sam(variant, _checkpoint(variant), device="cpu", seed=0).model


def _child(mode: str, n: int, variant: str) -> dict[str, Any]:
    import numpy as np
    import torch
    from PIL import Image

    paths = _image_paths(n)
    extra: dict[str, Any] = {}
    if mode.startswith("segloop"):
        from segloop.config import parse_config
        from segloop.data.base import Sample
        from segloop.embed import steps

        cfg = parse_config({"models": {"sam": {"variant": variant,
                                               "checkpoint": _checkpoint(variant)}},
                            "embed": {"compile": mode == "segloop_compiled"}})
        compiled = cfg.embed.compile is True
        samples = [Sample(p.name, str(p), None) for p in paths]
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            steps.embed_shard(cfg, f"{tmp}/warm",
                            steps.ShardPlan(0, "real", tuple(samples[:1]), compiled),
                            progress=False)
            warm = time.perf_counter() - t0
            out = f"{tmp}/out"
            t0 = time.perf_counter()
            size = cfg.embed.shard_size
            for k, i in enumerate(range(1, n + 1, size)):
                shard = steps.ShardPlan(k, "real", tuple(samples[i : i + size]), compiled)
                stats = steps.embed_shard(cfg, out, shard, progress=False)
                extra["bytes_written"] = extra.get("bytes_written", 0) + stats.bytes_written
            seconds = time.perf_counter() - t0
        extra["bytes_per_image"] = extra["bytes_written"] / n
    else:
        from segment_anything import SamAutomaticMaskGenerator, SamPredictor

        images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        sam = _sam(variant)
        if mode == "encoder_compiled":
            sam.image_encoder = torch.compile(sam.image_encoder, dynamic=False)
        if mode == "amg":
            amg = SamAutomaticMaskGenerator(sam, points_per_side=10)
            step = amg.generate
        else:
            predictor = SamPredictor(sam)
            step = predictor.set_image
        masks = []
        with torch.inference_mode():
            t0 = time.perf_counter()
            step(images[0])
            warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            for image in images[1:]:
                out = step(image)
                if mode == "amg":
                    masks.append(len(out))
            seconds = time.perf_counter() - t0
        if mode == "amg":
            extra["amg_masks_per_image"] = sum(masks) / len(masks)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "n": n, "variant": variant, "seconds_total": round(seconds, 3),
            "seconds_per_image": round(seconds / n, 4), "warmup_seconds": round(warm, 3),
            "peak_rss_mb": round(rss_mb, 1), "torch_threads": torch.get_num_threads(), **extra}


# ---- parent: schedule runs, merge, summarise, plot ------------------------------------


def _results_path(quick: bool) -> Path:
    return RESULTS / ("sam_embed_quick.json" if quick else "sam_embed.json")


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"runs": {}}


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _run_child(mode: str, n: int, variant: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--n", str(n), "--variant", variant]
    print(f"[sam_embed] {mode} on {n} images ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ,
                          "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"[sam_embed]   {result['seconds_per_image']:.2f} s/image, peak RSS "
          f"{result['peak_rss_mb']:.0f} MB", flush=True)
    return result


def summarize(data: dict[str, Any], images: int, rss_images: list[int]) -> dict[str, Any]:
    """Seconds per image, peak RSS per image count, ratios, and each target per config."""
    runs = data["runs"]
    spi = {m: runs[f"{m}/{images}"]["seconds_per_image"] for m in MODES if f"{m}/{images}" in runs}

    def rss_of(mode: str) -> dict[str, float]:
        return {str(n): runs[f"{mode}/{n}"]["peak_rss_mb"] for n in rss_images
                if f"{mode}/{n}" in runs}

    rss, rss_compiled = rss_of("segloop"), rss_of("segloop_compiled")
    ratios: dict[str, float] = {}
    for name in ("segloop", "segloop_compiled"):
        if name in spi and "amg" in spi:
            ratios[f"amg_over_{name}"] = round(spi["amg"] / spi[name], 3)
        for enc in ("encoder", "encoder_compiled"):
            if name in spi and enc in spi:
                ratios[f"{name}_over_{enc}"] = round(spi[name] / spi[enc], 3)
    targets: dict[str, Any] = {}
    for name, label in (("segloop", "eager"), ("segloop_compiled", "compiled")):
        t: dict[str, Any] = {}
        if f"amg_over_{name}" in ratios:
            value = ratios[f"amg_over_{name}"]
            t["vs_amg"] = {"target": f">= {TARGET_VS_AMG}x faster than AMG",
                           "measured": value, "met": value >= TARGET_VS_AMG}
        if f"{name}_over_encoder" in ratios:
            value = ratios[f"{name}_over_encoder"]
            t["vs_encoder"] = {"target": f"<= {TARGET_VS_ENCODER}x SAM's image encoder (eager, "
                               "as SamPredictor runs it)", "measured": value,
                               "met": value <= TARGET_VS_ENCODER}
        if f"{name}_over_encoder_compiled" in ratios:
            t["vs_encoder_compiled"] = {
                "note": "the same ratio against the compiled encoder: what the decoder, "
                "masks and writing cost on top of segloop's own encoder",
                "measured": ratios[f"{name}_over_encoder_compiled"]}
        mem = rss if name == "segloop" else rss_compiled
        if len(mem) == 2:
            lo, hi = (mem[str(n)] for n in rss_images)
            t["memory_flat"] = {"target": f"peak RSS at {rss_images[1]} images within 10% "
                                f"of {rss_images[0]}", "measured": round(hi / lo, 3),
                                "met": hi <= 1.1 * lo}
        targets[label] = t
    return {"seconds_per_image": spi, "peak_rss_mb": rss,
            "peak_rss_mb_compiled": rss_compiled, "ratios": ratios, "targets": targets,
            "default_config": "embed.compile: auto = compiled on CPU from 16 images to embed, "
            "eager below (and on GPUs)"}


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spi, rss = data["seconds_per_image"], data["peak_rss_mb"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4), width_ratios=[3, 1.6])
    names = [m for m in MODES if m in spi]
    colours = ["#999999", "#4c72b0", "#8da0cb", "#dd8452", "#f4a582"]
    ax.bar(names, [spi[m] for m in names], color=colours[: len(names)])
    for i, m in enumerate(names):
        ax.text(i, spi[m], f"{spi[m]:.2f}", ha="center", va="bottom", fontsize=9)
    if "amg" in spi:
        ax.axhline(spi["amg"] / TARGET_VS_AMG, ls="--", c="k", lw=1,
                   label=f"target: AMG / {TARGET_VS_AMG}")
    if "encoder" in spi:
        ax.axhline(spi["encoder"] * TARGET_VS_ENCODER, ls=":", c="#4c72b0", lw=1.2,
                   label=f"target: encoder x {TARGET_VS_ENCODER}")
    ax.set_ylabel("seconds per image (lower is better)")
    ax.set_title(f"SAM {data['protocol']['variant']}, 480x360, 10x10 points, "
                 f"{data['protocol']['images']} images, 2 CPU cores", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.tick_params(axis="x", labelsize=8)
    bars = [(f"eager\n{k} img", rss[k], "#dd8452") for k in sorted(rss, key=int)]
    comp = data.get("peak_rss_mb_compiled", {})
    bars += [(f"compiled\n{k} img", comp[k], "#f4a582") for k in sorted(comp, key=int)]
    bx.bar([b[0] for b in bars], [b[1] for b in bars], color=[b[2] for b in bars])
    for i, (_, value, _) in enumerate(bars):
        bx.text(i, value, f"{value:.0f}", ha="center", va="bottom", fontsize=8)
    bx.tick_params(axis="x", labelsize=7)
    bx.set_ylabel("segloop peak RSS (MB)")
    bx.set_title("memory vs images", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown_table(data: dict[str, Any]) -> str:
    spi, ratios = data["seconds_per_image"], data["ratios"]
    lines = ["| run | s / image | vs AMG | vs encoder |", "|---|---:|---:|---:|"]
    for m in MODES:
        if m not in spi:
            continue
        vs_amg = f"{spi['amg'] / spi[m]:.2f}x faster" if "amg" in spi and m != "amg" else ""
        vs_enc = f"{spi[m] / spi['encoder']:.2f}x" if "encoder" in spi else ""
        lines.append(f"| {LABELS.get(m, m)} | {spi[m]:.2f} | {vs_amg} | {vs_enc} |")
    for key, label in (("peak_rss_mb", "eager"), ("peak_rss_mb_compiled", "compiled")):
        rss = data.get(key) or {}
        if rss:
            lines.append("")
            lines.append(f"Peak RSS of segloop ({label}): " + ", ".join(
                f"{rss[k]:.0f} MB at {k} images" for k in sorted(rss, key=int)))
    del ratios
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.n, args.variant)))
        return 0
    path = _results_path(args.quick)
    data = _load(path)
    if args.table:
        print(markdown_table(data))
        return 0
    variant = "tiny" if args.quick else "vit_b"
    images = 2 if args.quick else args.images
    rss_images = [2, 4] if args.quick else args.rss_images
    todo = [(m, images) for m in (args.only or MODES)]
    for mode in ("segloop", "segloop_compiled"):
        if not args.only or mode in args.only:
            todo += [(mode, n) for n in rss_images if n != images]
    if variant != "tiny":
        _checkpoint(variant)  # once, before the timed children
    for mode, n in todo:
        key = f"{mode}/{n}"
        if key in data["runs"] and not args.redo:
            continue
        data["runs"][key] = _run_child(mode, n, variant)
        _save(path, data)
    data["protocol"] = {"variant": variant, "images": images, "rss_images": rss_images,
                        "points_per_side": 10, "image_size": "480x360 (CamVid train)",
                        "cpu_threads": os.cpu_count()}
    data.update(summarize(data, images, rss_images))
    _save(path, data)
    plot(data, path.with_suffix(".png"))
    print(markdown_table(data))
    print(json.dumps(data["targets"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
