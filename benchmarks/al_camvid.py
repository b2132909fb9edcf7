"""Label efficiency of segloop's active learning on CamVid (a benchmark, not a test).

Protocol (fixed; every recipe gets the same treatment):

- Pool: CamVid ``train`` (367 images); evaluation: ``val`` (101), both at 96x128 (images
  bilinear, labels nearest). Model: ``--model`` (default LR-ASPP MobileNetV3, random init).
- Fair schedule: the full-supervision reference and every active-learning round train afresh
  for the same ``--steps`` (batch 8, AdamW 2e-3, warm-up + cosine, flips and scale jitter),
  through the library's own ``fit_round`` (what the flow runs). The reference's convergence
  is shown by also training it (seed 0) for ``--curve-steps``.
- Image level: round 0 takes 2% of the images, then the recipe grows the labelled set to
  5, 10 and 20% (exact labels). Region level: SLIC superpixels (~100 per image); round 0
  takes 1% of the pool's pixels, then 2 and 5%; the simulated annotator gives each region its
  dominant ground-truth class (Cai et al.), one click per region.
- Recipes (``RECIPES``): ``random`` (random start and picks) and the strategies, each with
  the library's defaults (TypiClust start, stratified diversity (Cluster-Margin until
  2026-11-27: the ``entropy`` points in the JSONs were made with it), near-duplicate
  suppression, rarity class weights; at region level also region growing and at most 4
  regions per image per round). ``random`` trains with the same recipe (growing included),
  so the comparison isolates selection. ``abl/...`` recipes add one component at a time
  (``abl/topk``: random start, top-k entropy; ``abl/+diversity``; ``abl/+class-balance``;
  ``entropy`` adds growing at region level; ``abl/+semi`` adds semi-supervision on the
  pool, with ``abl/random+semi`` as its random counterpart; ``abl/topk-warm-start`` is the
  old unfair schedule: 300 warm-started steps per round); ``entropy-coverage`` and
  ``entropy-stratified`` swap Cluster-Margin for ``diversity: coverage`` / ``stratified``.
- The evaluation clip's neighbours: val is 6.7 s of sequence 0016E5 and the pool holds 18
  frames filmed within 10 s of it. Each point records how many of them are labelled
  (``images_near_eval``): one such frame moves mIoU by up to 0.2 at 5% of the images.
  ``--guard-frames 300`` leaves them out of the pool (results in ``al_camvid_guard.json``),
  so that a recipe is judged on a street it has not seen.
- Seeds 0, 1, 2 (``--seeds``); each point is saved as soon as it exists, every trained model
  is cached under ``benchmarks/.cache/al_camvid`` so a killed run resumes mid-chain.

Writes ``benchmarks/results/al_camvid.json`` and ``al_camvid.png`` (report:
``al_camvid_report.py``).

    python benchmarks/al_camvid.py --only full image/random image/entropy   # parts
    python benchmarks/al_camvid.py --quick        # minutes: 1 seed, 60 images, short schedule
    python benchmarks/al_camvid.py --table        # the README tables from the JSON
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from al_camvid_report import Results, markdown_table, plot, summarize  # noqa: E402

from segloop.active.fit import fit_round, initial_choice, select_round  # noqa: E402
from segloop.active.loop import simulated_labels, training_recipe  # noqa: E402
from segloop.active.pool import Pool, compute_regions  # noqa: E402
from segloop.active.selection import Budget  # noqa: E402
from segloop.active.state import LabelState  # noqa: E402
from segloop.config import ActiveConfig, Config, parse_config  # noqa: E402
from segloop.data.classes import CAMVID  # noqa: E402
from segloop.data.datasets import CamVidLayout  # noqa: E402
from segloop.train.arrays import SplitArrays, stack_split  # noqa: E402
from segloop.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from segloop.train.factory import build_from_config  # noqa: E402
from segloop.train.loop import evaluate  # noqa: E402

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "al_camvid"
IMAGE_BUDGETS = (0.02, 0.05, 0.10, 0.20)
REGION_BUDGETS = (0.01, 0.02, 0.05)
CPU = torch.device("cpu")
IGNORE = CAMVID.ignore_index
NEAR_FRAMES = 300  # 10 s of video at 30 fps

OFF = {"initial_strategy": "random", "diversity": "none", "dedup_similarity": None,
       "class_balance": "none"}
SEMI = {"semi": {"enabled": True}}
RECIPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (active overrides, train overrides); the rest are the library's defaults
    "random": ({"strategy": "random", "initial_strategy": "random"}, {}),
    # growing on: the region-level default until the ablation (abl/+class-balance, growing
    # off, is the default since); pinned so the stored region/entropy points stay reproducible
    "entropy": ({"strategy": "entropy", "region": {"grow": True}}, {}),
    "margin": ({"strategy": "margin"}, {}),
    "uig": ({"strategy": "uig"}, {}),
    "bald": ({"strategy": "bald"}, {}),
    "badge": ({"strategy": "badge"}, {}),
    "typiclust": ({"strategy": "typiclust"}, {}),
    "entropy-coverage": ({"strategy": "entropy", "diversity": "coverage"}, {}),
    "entropy-stratified": ({"strategy": "entropy", "diversity": "stratified"}, {}),
    # the default before stratified (kept for the figures measured with it)
    "entropy-cluster": ({"strategy": "entropy", "diversity": "cluster"}, {}),
    # ablation, adding one component at a time (entropy = the defaults)
    "abl/topk-warm-start": ({"strategy": "entropy", **OFF, "warm_start_steps": 300,
                             "region": {"grow": False, "max_per_image": None}},
                            {"label_sampling": "image"}),
    "abl/topk": ({"strategy": "entropy", **OFF,
                  "region": {"grow": False, "max_per_image": None}},
                 {"label_sampling": "image"}),
    "abl/+diversity": ({"strategy": "entropy", "class_balance": "none",
                        "region": {"grow": False}}, {}),
    "abl/+class-balance": ({"strategy": "entropy", "region": {"grow": False}}, {}),
    "abl/+semi": ({"strategy": "entropy"}, SEMI),
    "abl/random+semi": ({"strategy": "random", "initial_strategy": "random"}, SEMI),
}
IMAGE_ONLY = {"badge", "typiclust"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(HERE.parent.parent / "shared/datasets/camvid"))
    p.add_argument("--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    p.add_argument("--model", default="lraspp")
    p.add_argument("--seeds", type=int, nargs="+", default=(0, 1, 2))
    p.add_argument("--steps", type=int, default=2000, help="every training run")
    p.add_argument("--curve-steps", type=int, nargs="*", default=(1000, 4000),
                   help="extra full-supervision runs (seed 0) for the convergence curve")
    p.add_argument("--n-segments", type=int, default=100)
    p.add_argument("--only", nargs="*", default=None,
                   help="parts: full, image/<recipe>, region/<recipe>; or full-stream alone: "
                   "full supervision retrained with this checkout's training code beside the "
                   "stored run (written to <results>_stream.json)")
    p.add_argument("--guard-frames", type=int, default=0, metavar="N",
                   help="drop from the pool every image filmed within N frames (30 fps) of "
                   "an evaluation frame (300: the 18 images of the 10 s around val's clip); "
                   "results go to al_camvid_guard.json")
    p.add_argument("--quick", action="store_true",
                   help="1 seed, 60 pool images, a small U-Net for 150 steps: checks that "
                   "the script runs")
    p.add_argument("--out", default=str(HERE / "results" / "al_camvid.json"))
    p.add_argument("--plot-only", action="store_true", help="redraw the plot from the JSON")
    p.add_argument("--table", action="store_true",
                   help="print the JSON's results as markdown tables (for the README)")
    return p.parse_args(argv)


def recipe_config(args: argparse.Namespace, level: str, recipe: str, seed: int) -> Config:
    active, train = RECIPES[recipe]
    region = {"n_segments": args.n_segments, **active.get("region", {})}
    return parse_config({
        "base": {"seed": seed},
        "train": {"model": args.model, "steps": args.steps, **train},
        "active": {"level": level, "annotator": "exact" if level == "image" else "dominant",
                   "image_size": list(args.size), **active, "region": region},
    })


def budget_for(level: str, fraction: float, pool: Pool, state: LabelState) -> Budget:
    """What is left to spend to reach ``fraction`` of the images / pixels."""
    if level == "image":
        return Budget(units=max(0, round(fraction * len(pool)) - state.labelled_images))
    return Budget(pixels=max(0, int(fraction * pool.total_pixels) - state.queried_pixels))


def miou(model: torch.nn.Module, ev: SplitArrays) -> dict[str, Any]:
    assert ev.labels is not None
    m = evaluate(model, ev.images, ev.labels, CAMVID.names, IGNORE, CPU)
    return {"miou": m.miou, "iou": list(m.iou)}


def trained(cfg: Config, pool: Pool, state: LabelState, key: str, seed: int,
            init: torch.nn.Module | None) -> tuple[torch.nn.Module, float]:
    """``fit_round``, or its cached result (safetensors under benchmarks/.cache)."""
    path = CACHE / f"{key}.safetensors"
    model = build_from_config(cfg.train, CAMVID.num_classes)
    if path.is_file():
        meta = load_checkpoint(model, path)
        return model, float(meta["train_seconds"])
    model, secs = fit_round(pool, state, state.labels, cfg, seed, CPU, init=init,
                            progress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, path, {"train_seconds": secs})
    return model, secs


def frame(name: str) -> tuple[str, int]:
    """CamVid file name -> (video sequence, frame number at 30 fps): '0006R0_f01140.png'
    -> ('0006R0', 1140)."""
    seq, _, rest = Path(name).stem.partition("_")
    return seq, int("".join(ch for ch in rest if ch.isdigit()))


def near_eval(names: list[str], eval_names: tuple[str, ...], window: int = NEAR_FRAMES
              ) -> set[int]:
    """Indices of ``names`` filmed within ``window`` frames of an evaluation frame of the
    same sequence: near-copies of the evaluation clip (val is 6.7 s of 0016E5; the pool
    holds the 10 s around it)."""
    clip: dict[str, list[int]] = {}
    for n in eval_names:
        seq, f = frame(n)
        clip.setdefault(seq, []).append(f)
    out = set()
    for i, n in enumerate(names):
        seq, f = frame(n)
        if seq in clip and min(abs(f - g) for g in clip[seq]) <= window:
            out.add(i)
    return out


def point(level: str, recipe: str, seed: int, budget: float, state: LabelState, pool: Pool,
          result: dict[str, Any], near: set[int], **extra: Any) -> dict[str, Any]:
    touched = [int(i) for i in state.image_queried().nonzero()[0]]
    # CamVid names start with their video sequence (val is all 0016E5): where labels went.
    sequences = Counter(pool.arrays.names[i].split("_")[0] for i in touched)
    return {"level": level, "strategy": recipe, "seed": seed, "budget_fraction": budget,
            "image_fraction": state.labelled_images / len(pool),
            "pixel_fraction": state.queried_pixels / pool.total_pixels, "clicks": state.clicks,
            "images_by_sequence": dict(sorted(sequences.items())),
            "images_near_eval": len(near.intersection(touched)), **result, **extra}


def _full_supervision(args: argparse.Namespace, pool: Pool, ev: SplitArrays, seed: int,
                      steps: int, tag: str = "") -> tuple[dict[str, Any], float]:
    """Train (or load) the model on every pool label; its mIoU and training seconds."""
    cfg = recipe_config(args, "image", "random", seed)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": steps})})
    state = LabelState.empty(pool, IGNORE)
    assert pool.arrays.labels is not None
    state.query_everything(pool, pool.arrays.labels.numpy())
    key = f"full/{args.model}-{steps}-seed{seed}{_guard(args)}{tag}"
    model, secs = trained(cfg, pool, state, key, seed, None)
    return miou(model, ev), secs


def run_full(args: argparse.Namespace, pool: Pool, ev: SplitArrays, res: Results, seed: int,
             steps: int) -> None:
    if res.has("full", seed=seed, steps=steps):
        return
    r, secs = _full_supervision(args, pool, ev, seed, steps)
    print(f"full supervision seed {seed}, {steps} steps: mIoU {r['miou']:.4f} ({secs:.0f} s)",
          flush=True)
    res.add("full", {"seed": seed, "steps": steps, **r, "train_seconds": secs})


def run_stream_check(args: argparse.Namespace, pool: Pool, ev: SplitArrays, res: Results,
                     seed: int, stored: Path) -> None:
    """Full supervision retrained with this checkout's training code beside the stored run
    (same seed and steps): batches now come through the DataLoader with picks from their
    own generator, so the weights differ; the figures must not move beyond seed noise."""
    res.data.setdefault("stream_check", [])
    if res.has("stream_check", seed=seed, steps=args.steps):
        return
    before = json.loads(stored.read_text()).get("full", []) if stored.is_file() else []
    old = next((p["miou"] for p in before if p["seed"] == seed and p["steps"] == args.steps),
               None)
    r, secs = _full_supervision(args, pool, ev, seed, args.steps, "-loader")
    print(f"stream check seed {seed}: mIoU {r['miou']:.4f} (stored {old})", flush=True)
    res.add("stream_check", {"seed": seed, "steps": args.steps, "miou": r["miou"],
                             "stored_miou": old, "train_seconds": secs,
                             "loader_workers": recipe_config(args, "image", "random", seed)
                             .train.loader_workers})


def run_chain(args: argparse.Namespace, level: str, recipe: str, pool: Pool, ev: SplitArrays,
              res: Results, seed: int, budgets: tuple[float, ...]) -> None:
    near = near_eval(list(pool.arrays.names), ev.names)
    """One recipe's rounds for one seed: round 0, then one round per further budget."""
    if all(res.has("points", level=level, strategy=recipe, seed=seed, budget_fraction=b)
           for b in budgets):
        return
    cfg = recipe_config(args, level, recipe, seed)
    ac: ActiveConfig = cfg.active
    mode = "exact" if level == "image" else "dominant"
    state = LabelState.empty(pool, IGNORE)
    choice = initial_choice(pool, state, cfg, budget_for(level, budgets[0], pool, state))
    _label(pool, state, choice.selection, mode)
    model: torch.nn.Module | None = None
    score_secs: float | None = None
    for k, b in enumerate(budgets):
        init = model if (ac.warm_start_steps is not None and k > 0) else None
        model, secs = trained(cfg, pool, state, _model_key(args, cfg, level, recipe, seed, k),
                              seed * 1000 + k, init)
        if not res.has("points", level=level, strategy=recipe, seed=seed, budget_fraction=b):
            r = miou(model, ev)
            print(f"{level}/{recipe} seed {seed} {100 * b:.1f}%: mIoU {r['miou']:.4f} "
                  f"(train {secs:.0f} s)", flush=True)
            res.add("points", point(level, recipe, seed, b, state, pool, r, near,
                                    train_seconds=secs, score_seconds=score_secs))
        if k + 1 == len(budgets):
            break
        choice, _, score_secs = select_round(model, pool, state, cfg,
                                             budget_for(level, budgets[k + 1], pool, state),
                                             k + 1, CPU, progress=False)
        _label(pool, state, choice.selection, mode)


def _model_key(args: argparse.Namespace, cfg: Config, level: str, recipe: str, seed: int,
               k: int) -> str:
    """Cache key of round ``k``'s model. Round 0 depends only on the start (initial strategy,
    region cap) and the training recipe, so recipes that agree on those share it."""
    base = f"{level}/{args.model}-{args.steps}-seg{args.n_segments}-seed{seed}{_guard(args)}"
    if k > 0:
        return f"{base}/{recipe}/round{k}"
    what = {"start": cfg.active.initial_strategy, "cap": cfg.active.region.max_per_image,
            "train": training_recipe(cfg)}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]
    return f"{base}/round0-{cfg.active.initial_strategy}-{digest}"


def _guard(args: argparse.Namespace) -> str:
    return f"-guard{args.guard_frames}" if args.guard_frames else ""


def _label(pool: Pool, state: LabelState, selection, mode: str) -> None:  # type: ignore[no-untyped-def]
    for i, label in simulated_labels(pool, selection, mode, IGNORE).items():
        state.apply(pool, i, [u.region_id for u in selection.units if u.image_index == i],
                    label)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    budgets = {"image": IMAGE_BUDGETS, "region": REGION_BUDGETS}
    if args.quick:
        args.seeds, args.steps, args.curve_steps, args.model = (0,), 150, (), "unet"
        budgets = {"image": (0.05, 0.20), "region": (0.02, 0.05)}
        if args.out == str(HERE / "results" / "al_camvid.json"):
            out = out.with_name("al_camvid_quick.json")
    elif args.guard_frames and args.out == str(HERE / "results" / "al_camvid.json"):
        out = out.with_name("al_camvid_guard.json")
    stored = out  # the stream check compares with the stored runs, and writes apart
    if args.only == ["full-stream"]:
        out = out.with_name(out.stem + "_stream.json")
    # what decides the numbers (a change starts the JSON afresh); seeds, parts and the
    # convergence runs only add points
    protocol = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
                if k in ("size", "model", "steps", "n_segments", "quick")}
    if args.guard_frames:
        protocol["guard_frames"] = args.guard_frames
    protocol.update(image_budgets=list(budgets["image"]),
                    region_budgets=list(budgets["region"]), pool_limit=60 if args.quick else None)
    res = Results(out, protocol)
    if args.plot_only or args.table:  # read only: a running benchmark may own the JSON
        res.data.update(summarize(res.data))
        plot(res.data, out.with_suffix(".png"))
        if args.table:
            print(markdown_table(res.data))
        return 0
    torch.set_num_threads(os.cpu_count() or 1)
    size = tuple(args.size)
    arrays = stack_split(CamVidLayout(args.root, "train", CAMVID), size, desc="pool")
    if args.quick:
        arrays = SplitArrays(arrays.images[:60], arrays.labels[:60], arrays.image_ids[:60],
                             arrays.names[:60], arrays.original_hw[:60])
    ev = stack_split(CamVidLayout(args.root, "val", CAMVID), size, desc="eval")
    if args.guard_frames:
        drop = near_eval(list(arrays.names), ev.names, args.guard_frames)
        keep = torch.tensor([i for i in range(len(arrays.names)) if i not in drop])
        print(f"--guard-frames {args.guard_frames}: {len(drop)} pool images near the "
              f"evaluation clip left out, {len(keep)} remain", flush=True)
        arrays = SplitArrays(arrays.images[keep], arrays.labels[keep],
                             tuple(arrays.image_ids[i] for i in keep.tolist()),
                             tuple(arrays.names[i] for i in keep.tolist()),
                             tuple(arrays.original_hw[i] for i in keep.tolist()))
    image_pool = Pool(arrays, (), None, None)
    regions, counts = compute_regions(arrays, ActiveConfig(region={"n_segments": args.n_segments}))
    region_pool = Pool(arrays, (), regions, counts)
    parts = args.only or ["full", "image/random", "image/entropy", "region/random",
                          "region/entropy"]
    for name in parts:
        level, _, recipe = name.partition("/")
        if name not in ("full", "full-stream") and (level not in budgets or recipe not in RECIPES
                               or (level == "region" and recipe in IMAGE_ONLY)):
            raise SystemExit(f"--only: unknown part {name!r}: full, image/<recipe> or "
                             f"region/<recipe>; recipes: {', '.join(RECIPES)}")
    start = time.perf_counter()
    for seed in args.seeds:
        if "full" in parts:
            run_full(args, image_pool, ev, res, seed, args.steps)
            if seed == args.seeds[0]:
                for steps in args.curve_steps:
                    run_full(args, image_pool, ev, res, seed, steps)
        if "full-stream" in parts:
            run_stream_check(args, image_pool, ev, res, seed, stored)
        for name in parts:
            if name in ("full", "full-stream"):
                continue
            level, _, recipe = name.partition("/")
            pool = image_pool if level == "image" else region_pool
            run_chain(args, level, recipe, pool, ev, res, seed, budgets[level])
    res.save()
    if args.only == ["full-stream"]:  # a table of a few runs: no plot
        print(json.dumps(res.data["stream_check"], indent=1))
        return 0
    plot(res.data, out.with_suffix(".png"))
    print(json.dumps({"full_miou": res.data["full_miou"], "to95": res.data["to95"],
                      "minutes": round((time.perf_counter() - start) / 60, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
