"""Throughput of segloop's synthesize flow vs a bare diffusers loop (a benchmark, not a test).

Protocol (fixed):

- Model: the Stable Diffusion 1.x architecture (UNet 860M, VAE, CLIP ViT-L/14 text encoder)
  with random weights (``models.diffusion.model_id: random-sd1``): compute does not depend
  on weight values. The tokenizer is segloop's tiny offline CLIP tokenizer.
- Settings: ``--size`` pixels square (default 128, latents 16x16), ``--steps`` (default
  4) PNDM steps, guidance 7.5 (classifier-free guidance doubles the UNet batch), two
  classes, ``--images`` images in all (default 32), batch ``--batch`` (default 4), chunks
  of ``--chunk`` images (default 8: four chunk tasks a run).
- One process, one pipeline object shared by every measurement, one warm-up call first,
  then ``--repeats`` (default 5) rounds of the four runs below, interleaved so that drift
  of the machine's speed hits all alike; reported: medians, every round, and the flow's
  overhead over batched generation per round (paired), its median and spread (min, max).

  * ``bare_loop``: ``pipe(prompt, generator=...)`` once per image, nothing written, on the
    first ``--bare-images`` (default 8) images (a rate; the slowest run, kept short).
  * ``batched``: segloop's ``generate_images`` on batches of ``--batch`` (the same per-image
    seeds), nothing written.
  * ``library``: the flow's chunks through the library without Prefect
    (``steps.generate_chunk`` for each chunk of ``steps.plan``, one after another: batched
    generation plus PNG encoding, atomic file writes and manifest parts), into a fresh
    folder.
  * ``segloop``: the ``synthesize`` flow end to end on Prefect's local server (plan, chunk
    tasks, PNG and manifest writing, progress artifact, compaction, contact sheet, DVC
    versioning) in a temporary workspace. ``images_per_second.segloop`` counts the
    generation phase (chunk tasks, with their writing); ``segloop_wall`` is the flow's whole
    wall time, server start excluded.

  The split of the flow's overhead over ``batched``: ``writing`` = library / batched - 1
  (PNGs, files, manifest parts), ``orchestration`` = segloop / library - 1 (Prefect: task
  submission and states, logs, the progress artifact, the local server), per round, medians.
  Less noisy views of orchestration: ``prefect_seconds_between_chunks`` (the flow's
  generation phase less its chunk tasks' own seconds) and ``cpu_seconds`` (CPU time of
  this process and of the server process during the library and the flow runs: what the
  flow spends besides the same generation and writing).

Writes ``benchmarks/results/synthesize.json`` and ``synthesize.png``.

    python benchmarks/synthesize.py            # ~42 min on 2 cores (5 rounds)
    python benchmarks/synthesize.py --quick    # tiny pipeline: checks the script only
    python benchmarks/synthesize.py --table    # the README table, from the JSON
    python benchmarks/synthesize.py --replot   # redraw the plot from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGET_BATCHING = 1.3
TARGET_OVERHEAD = 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--bare-images", type=int, default=8, help="images of the bare loop")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--chunk", type=int, default=8, help="images per chunk task")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians)")
    p.add_argument("--quick", action="store_true", help="tiny pipeline, separate JSON")
    p.add_argument("--table", action="store_true", help="print the README table and exit")
    p.add_argument("--replot", action="store_true",
                   help="redraw the plot from the results JSON and exit")
    return p.parse_args(argv)


def _config(args: argparse.Namespace, tmp: str) -> Any:
    from segloop.config import parse_config

    return parse_config({
        "base": {"paths": {"workspace": f"{tmp}/ws", "dvc_remote": f"{tmp}/remote",
                           "reports": f"{tmp}/reports", "prefect_home": f"{tmp}/prefect"}},
        "models": {"diffusion": {"model_id": "tiny" if args.quick else "random-sd1"}},
        "synth": {"dataset": "bench", "classes": ["forklift", "pallet"],
                  "images_per_class": args.images // 2, "batch_size": args.batch,
                  "chunk_size": args.chunk, "steps": args.steps, "guidance": 7.5,
                  "height": args.size, "width": args.size, "contact_per_class": 2},
    })


def _jobs(cfg: Any) -> list[Any]:
    from segloop.synth.prompts import jobs_for

    return [j for k in range(len(cfg.synth.classes)) for j in jobs_for(cfg.synth, k, 0)]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """``--repeats`` rounds of (bare loop, batched, library, flow), interleaved, on one
    pipeline."""
    from prefect.testing.utilities import prefect_test_harness

    from segloop.flows.synthesize import synthesize_flow
    from segloop.runtime import configure_offline
    from segloop.synth import steps
    from segloop.synth.generate import generate_images

    tmp = tempfile.mkdtemp(prefix="segloop-bench-synth-")
    cfg = _config(args, tmp)
    configure_offline(cfg.base.paths.prefect_home)
    t0 = time.perf_counter()
    loaded = steps.pipeline(cfg)  # cached: the flow below reuses this very object
    load_seconds = time.perf_counter() - t0
    pipe, s = loaded.pipe, steps.generation_settings(cfg)
    jobs = _jobs(cfg)
    n, bare = len(jobs), jobs[: args.bare_images]
    generate_images(pipe, jobs[:1], s)  # warm-up
    reps: dict[str, list[float]] = {"bare_loop": [], "batched": [], "library": [],
                                    "segloop": [], "segloop_wall": []}
    between: list[float] = []
    cpu: dict[str, list[dict[str, float]]] = {"library": [], "segloop": []}
    with prefect_test_harness(server_startup_timeout=None):
        for rep in range(args.repeats):
            print(f"[synthesize] round {rep + 1}/{args.repeats}: bare loop, batched, library, "
                  "flow", flush=True)
            t0 = time.perf_counter()
            for job in bare:
                pipe(prompt=job.prompt, generator=torch.Generator().manual_seed(job.seed),
                     num_inference_steps=s.steps, guidance_scale=s.guidance,
                     height=s.height, width=s.width, output_type="np")
            reps["bare_loop"].append(len(bare) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for i in range(0, n, args.batch):
                generate_images(pipe, jobs[i : i + args.batch], s)
            reps["batched"].append(n / (time.perf_counter() - t0))
            out = f"{tmp}/library{rep}"
            chunks = steps.plan(cfg, out).chunks
            c0, t0 = _cpu(), time.perf_counter()
            for chunk in chunks:
                steps.generate_chunk(cfg, out, chunk, pipe=pipe)
            reps["library"].append(n / (time.perf_counter() - t0))
            cpu["library"].append(_cpu_since(c0))
            fresh = cfg.model_copy(update={"synth": cfg.synth.model_copy(
                update={"dataset": f"bench{rep}"})})
            c0, t0 = _cpu(), time.perf_counter()
            summary = synthesize_flow(config=fresh)
            wall = time.perf_counter() - t0
            cpu["segloop"].append(_cpu_since(c0))
            if summary["generated"] != n:
                raise SystemExit(f"the flow generated {summary['generated']} images, not {n}")
            reps["segloop"].append(n / summary["seconds"])
            reps["segloop_wall"].append(n / wall)
            # the generation phase less the chunk tasks' own work: Prefect between them
            between.append(summary["seconds"] - sum(c["seconds"] for c in summary["chunks"]))
            print("  " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in reps.items()) + " images/s",
                  flush=True)
    per_round = {
        "flow": [b / f - 1 for b, f in zip(reps["batched"], reps["segloop"], strict=True)],
        "writing": [b / f - 1 for b, f in zip(reps["batched"], reps["library"], strict=True)],
        "orchestration": [lib / f - 1 for lib, f in zip(reps["library"], reps["segloop"],
                                                        strict=True)]}
    return {"images_per_second": {k: round(statistics.median(v), 4) for k, v in reps.items()},
            "rounds": {k: [round(x, 4) for x in v] for k, v in reps.items()},
            "flow_overhead_per_round": [round(o, 4) for o in per_round["flow"]],
            "overhead_split_per_round": {k: [round(o, 4) for o in v]
                                         for k, v in per_round.items() if k != "flow"},
            "prefect_seconds_between_chunks": [round(x, 3) for x in between],
            "cpu_seconds": cpu,
            "load_seconds": round(load_seconds, 2), "images": n, "chunks": len(chunks),
            "torch_threads": torch.get_num_threads()}


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + system) so far: this process, and its children (Prefect's local
    server of the test harness)."""
    import psutil  # a dependency of DVC's

    me = psutil.Process()
    own = sum(me.cpu_times()[:2])
    kids = 0.0
    for child in me.children(recursive=True):
        try:
            kids += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return own, kids


def _cpu_since(start: tuple[float, float]) -> dict[str, float]:
    own, kids = _cpu()
    return {"process": round(own - start[0], 2), "server": round(kids - start[1], 2)}


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    ips = data["images_per_second"]
    batching = ips["batched"] / ips["bare_loop"]
    per_round = data["flow_overhead_per_round"]
    overhead = statistics.median(per_round)  # paired, per round
    overhead_wall = ips["batched"] / ips["segloop_wall"] - 1
    split = {k: round(statistics.median(v), 4)
             for k, v in data["overhead_split_per_round"].items()}
    return {"ratios": {"batched_over_bare": round(batching, 3),
                       "segloop_over_bare": round(ips["segloop"] / ips["bare_loop"], 3),
                       "flow_overhead": round(overhead, 4),
                       "flow_overhead_min": round(min(per_round), 4),
                       "flow_overhead_max": round(max(per_round), 4),
                       "flow_overhead_wall": round(overhead_wall, 4)},
            "overhead_split": split,
            "targets": {
                "batching": {"target": f">= {TARGET_BATCHING}x the bare loop",
                             "measured": round(batching, 3), "met": batching >= TARGET_BATCHING},
                "orchestration": {"target": f"flow adds <= {TARGET_OVERHEAD:.0%} over batched",
                                  "measured": round(overhead, 4),
                                  "met": overhead <= TARGET_OVERHEAD}}}


def plot(data: dict[str, Any], path: Path) -> None:
    """Left: images/s per run (medians). Right: the flow's overhead over batched generation
    per round, split into writing (library vs batched) and Prefect (flow vs library)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ips = data["images_per_second"]
    names = ["bare_loop", "batched", "library", "segloop", "segloop_wall"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2), width_ratios=[1.2, 1])
    ax.bar(names, [ips[k] for k in names],
           color=["#999999", "#4c72b0", "#55a868", "#dd8452", "#f4a582"])
    for i, k in enumerate(names):
        ax.text(i, ips[k], f"{ips[k]:.3f}", ha="center", va="bottom", fontsize=9)
    ax.axhline(ips["bare_loop"] * TARGET_BATCHING, ls="--", c="k", lw=1,
               label=f"target: bare loop x {TARGET_BATCHING}")
    p = data["protocol"]
    ax.set_title(f"{p['model']}, {p['size']}px, {p['steps']} steps, batch {p['batch']}, "
                 f"{p['images']} images, 2 CPU cores", fontsize=9)
    ax.set_ylabel("images/s, median of rounds (higher is better)")
    ax.set_ylim(0, 1.2 * max(ips[k] for k in names))
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=8)
    series = {"flow vs batched": data["flow_overhead_per_round"],
              "writing (library vs batched)": data["overhead_split_per_round"]["writing"],
              "Prefect (flow vs library)": data["overhead_split_per_round"]["orchestration"]}
    rounds = range(1, len(data["flow_overhead_per_round"]) + 1)
    width = 0.8 / len(series)
    for j, ((label, values), colour) in enumerate(
            zip(series.items(), ["#dd8452", "#55a868", "#8172b3"], strict=True)):
        bx.bar([r + (j - 1) * width for r in rounds], [100 * v for v in values], width,
               label=label, color=colour)
    bx.axhline(100 * TARGET_OVERHEAD, ls="--", c="k", lw=1,
               label=f"target: flow adds <= {TARGET_OVERHEAD:.0%}")
    bx.axhline(0, c="k", lw=0.5)
    median = 100 * data["ratios"]["flow_overhead"]
    bx.set_title(f"overhead per round (paired); median flow vs batched {median:+.1f}%",
                 fontsize=9)
    bx.set_xlabel("round")
    bx.set_xticks(list(rounds))
    bx.set_ylabel("% slower (lower is better)")
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown_table(data: dict[str, Any]) -> str:
    ips, r = data["images_per_second"], data["ratios"]
    rows = [("bare diffusers loop, one image per call", ips["bare_loop"], "1.00x"),
            (f"batched (batch {data['protocol']['batch']}), no writing", ips["batched"],
             f"{r['batched_over_bare']:.2f}x"),
            ("library chunks, writing, no Prefect", ips["library"],
             f"{ips['library'] / ips['bare_loop']:.2f}x"),
            ("segloop flow, generation phase", ips["segloop"], f"{r['segloop_over_bare']:.2f}x"),
            ("segloop flow, whole run (plan to DVC push)", ips["segloop_wall"],
             f"{ips['segloop_wall'] / ips['bare_loop']:.2f}x")]
    lines = ["| run | images/s | vs bare loop |", "|---|---:|---:|"]
    lines += [f"| {name} | {v:.3f} | {x} |" for name, v, x in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = RESULTS / ("synthesize_quick.json" if args.quick else "synthesize.json")
    if args.table:
        print(markdown_table(json.loads(path.read_text())))
        return 0
    if args.replot:
        plot(json.loads(path.read_text()), path.with_suffix(".png"))
        return 0
    if args.quick:
        args.images, args.bare_images, args.batch, args.chunk = 4, 2, 2, 2
        args.steps, args.size, args.repeats = 2, 32, 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = measure(args)
    data["protocol"] = {"model": "tiny" if args.quick else "SD 1.x architecture, random",
                        "size": args.size, "steps": args.steps, "batch": args.batch,
                        "images": args.images, "bare_loop_images": args.bare_images,
                        "chunk": args.chunk, "guidance": 7.5, "repeats": args.repeats}
    data.update(summarize(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    plot(data, path.with_suffix(".png"))
    print(markdown_table(data))
    print(json.dumps(data["targets"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
