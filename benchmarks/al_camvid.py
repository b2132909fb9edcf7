"""Label efficiency of segloop's active learning on CamVid (a benchmark, not a test).

Protocol (fixed; every strategy gets exactly the same treatment):

- Pool: CamVid ``train`` (367 images); evaluation: ``val`` (101), both at 96x128 (images
  bilinear, labels nearest). Model: ``--model`` (default LR-ASPP MobileNetV3, random init).
- Full-supervision reference: the same model trained from scratch on every pool label for
  ``--full-steps`` steps (one per seed).
- Image level: random start with 2% of the images, then the strategy grows the labelled set
  to 5, 10, 20, 30% of the images (exact labels). Region level: SLIC superpixels
  (~100 per image); random start with 0.5% of the pool's pixels, then 1, 2, 5, 10%; the
  simulated annotator gives each region its dominant ground-truth class (Cai et al.).
- Schedule: the round-0 model trains from scratch for ``--first-steps`` steps and is shared
  by every strategy of the same seed and level (same random start); each later round
  warm-starts from the previous round's model and trains ``--round-steps`` more steps on
  all labels so far. Batch 8, AdamW 2e-3, cosine, flips and scale jitter 0.75-1.25.
- Strategies: random, entropy, UIG (thesis: on the image-averaged softmax), BALD (MC
  dropout, 8 samples) at image level; random, entropy and UIG (mean per-pixel score inside
  the region) at region level. Seeds 0, 1, 2.

Writes ``benchmarks/results/al_camvid.json`` (every point, mean and spread per budget,
``to95``: the smallest labelled fraction whose mean mIoU reaches 95% of ``full_miou``) and
``al_camvid.png``. Runs in parts: each finished point is saved at once, a rerun skips it, so
``--only image/uig`` etc. can be run one at a time and merge into the same JSON.

    python benchmarks/al_camvid.py                # the full protocol (~90 min, 2 cores)
    python benchmarks/al_camvid.py --quick        # a few minutes: 1 seed, short schedule
    python benchmarks/al_camvid.py --only region/uig --seeds 0
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segloop.active.acquisition import STRATEGIES
from segloop.active.loop import simulated_labels
from segloop.active.pool import Pool, compute_regions
from segloop.active.scoring import candidate_units_random, score_pool
from segloop.active.selection import Budget, select
from segloop.active.state import LabelState
from segloop.config import ActiveConfig
from segloop.data.classes import CAMVID
from segloop.data.datasets import CamVidLayout
from segloop.train.arrays import SplitArrays, stack_split
from segloop.train.loop import TrainSettings, evaluate, train_model
from segloop.train.models import build_model

HERE = Path(__file__).resolve().parent
IMAGE_BUDGETS = (0.02, 0.05, 0.10, 0.20, 0.30)
REGION_BUDGETS = (0.005, 0.01, 0.02, 0.05, 0.10)
STRATEGIES_BY_LEVEL = {"image": ("random", "entropy", "uig", "bald"),
                       "region": ("random", "entropy", "uig")}
CPU = torch.device("cpu")
IGNORE = CAMVID.ignore_index


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(HERE.parent.parent / "shared/datasets/camvid"))
    p.add_argument("--pool-split", default="train")
    p.add_argument("--eval-split", default="val")
    p.add_argument("--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    p.add_argument("--model", default="lraspp")
    p.add_argument("--seeds", type=int, nargs="+", default=(0, 1, 2))
    p.add_argument("--first-steps", type=int, default=1000)
    p.add_argument("--round-steps", type=int, default=300)
    p.add_argument("--full-steps", type=int, default=3000)
    p.add_argument("--n-segments", type=int, default=100)
    p.add_argument("--only", nargs="*", default=None,
                   help="parts to run: full, image/<strategy>, region/<strategy>")
    p.add_argument("--quick", action="store_true",
                   help="1 seed, 2 budgets per level, short schedule, 60 pool images")
    p.add_argument("--out", default=str(HERE / "results" / "al_camvid.json"))
    p.add_argument("--plot-only", action="store_true", help="redraw the plot from the JSON")
    p.add_argument("--table", action="store_true",
                   help="print the JSON's results as a markdown table (for the README)")
    return p.parse_args(argv)


# ---- one training run --------------------------------------------------------------------


def train(model: torch.nn.Module, pool: Pool, labels: np.ndarray, steps: int,
          seed: int) -> float:
    start = time.perf_counter()
    train_model(model, pool.arrays.images, torch.from_numpy(labels),
                TrainSettings(steps=steps, seed=seed), IGNORE, CPU, progress=False)
    return time.perf_counter() - start


def fresh_model(args: argparse.Namespace, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(args.model, CAMVID.num_classes)


def miou(model: torch.nn.Module, ev: SplitArrays) -> dict[str, Any]:
    assert ev.labels is not None
    m = evaluate(model, ev.images, ev.labels, CAMVID.names, IGNORE, CPU)
    return {"miou": m.miou, "iou": list(m.iou)}


def label_selection(pool: Pool, state: LabelState, selection, mode: str) -> None:
    for i, label in simulated_labels(pool, selection, mode, IGNORE).items():
        state.apply(pool, i, [u.region_id for u in selection.units if u.image_index == i],
                    label)


def budget_for(level: str, fraction: float, pool: Pool, state: LabelState) -> Budget:
    """What is left to spend to reach ``fraction`` of the images / pixels."""
    if level == "image":
        return Budget(units=max(0, round(fraction * len(pool)) - state.labelled_images))
    return Budget(pixels=max(0, int(fraction * pool.total_pixels) - state.queried_pixels))


def point(level: str, strategy: str, seed: int, budget: float, state: LabelState, pool: Pool,
          result: dict[str, Any], **extra: Any) -> dict[str, Any]:
    touched = np.flatnonzero(state.image_queried())
    # CamVid names start with their video sequence (val is all 0016E5): where labels went.
    sequences = Counter(pool.arrays.names[i].split("_")[0] for i in touched)
    return {"level": level, "strategy": strategy, "seed": seed, "budget_fraction": budget,
            "image_fraction": state.labelled_images / len(pool),
            "pixel_fraction": state.queried_pixels / pool.total_pixels, "clicks": state.clicks,
            "images_by_sequence": dict(sorted(sequences.items())), **result, **extra}


# ---- the protocol -------------------------------------------------------------------------


class Results:
    """Points saved to the JSON as soon as they exist (so the benchmark runs in parts)."""

    def __init__(self, path: Path, protocol: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {"protocol": protocol, "points": [], "full": [],
                                     "timing": []}
        if path.is_file():
            old = json.loads(path.read_text())
            if old.get("protocol") == protocol:
                self.data.update({k: old.get(k, []) for k in ("points", "full", "timing")})
            else:
                print(f"{path}: protocol changed, starting afresh", file=sys.stderr)

    def has(self, kind: str, **key: Any) -> bool:
        return any(all(p.get(k) == v for k, v in key.items()) for p in self.data[kind])

    def add(self, kind: str, item: dict[str, Any]) -> None:
        self.data[kind].append(item)
        self.save()

    def save(self) -> None:
        self.data.update(summarize(self.data))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)


def run_full(args, pool: Pool, ev: SplitArrays, res: Results, seed: int) -> None:
    if res.has("full", seed=seed):
        return
    model = fresh_model(args, seed)
    assert pool.arrays.labels is not None
    secs = train(model, pool, pool.arrays.labels.numpy(), args.full_steps, seed)
    r = miou(model, ev)
    print(f"full supervision seed {seed}: mIoU {r['miou']:.4f} ({secs:.0f} s)", flush=True)
    res.add("full", {"seed": seed, **r, "train_seconds": secs})


def run_level(args, level: str, strategies: list[str], pool: Pool, ev: SplitArrays,
              res: Results, seed: int, budgets: tuple[float, ...]) -> None:
    todo = [s for s in strategies
            if not all(res.has("points", level=level, strategy=s, seed=seed, budget_fraction=b)
                       for b in budgets)]
    if not todo:
        return
    mode = "exact" if level == "image" else "dominant"
    # Round 0: the same random start (and model) for every strategy of this seed.
    state0 = LabelState.empty(pool, IGNORE)
    gen = torch.Generator().manual_seed(seed * 1_000_003)
    units = candidate_units_random(pool, state0, level, gen)
    label_selection(pool, state0, select(units, budget_for(level, budgets[0], pool, state0)),
                    mode)
    model0 = fresh_model(args, seed)
    secs0 = train(model0, pool, state0.labels, args.first_steps, seed)
    r0 = miou(model0, ev)
    print(f"{level} seed {seed} round 0 ({100 * budgets[0]:.1f}%): mIoU {r0['miou']:.4f}",
          flush=True)
    for strategy in todo:
        state, model = copy.deepcopy(state0), copy.deepcopy(model0)
        if not res.has("points", level=level, strategy=strategy, seed=seed,
                       budget_fraction=budgets[0]):
            res.add("points", point(level, strategy, seed, budgets[0], state, pool, r0,
                                    train_seconds=secs0))
        for k, b in enumerate(budgets[1:], start=1):
            start = time.perf_counter()
            units = score_pool(model, pool, state, strategy, level, CPU, round_number=k,
                               seed=seed, mc_samples=8, progress=False)
            score_secs = time.perf_counter() - start
            sel = select(units, budget_for(level, b, pool, state))
            label_selection(pool, state, sel, mode)
            secs = train(model, pool, state.labels, args.round_steps, seed * 1000 + k)
            r = miou(model, ev)
            print(f"{level}/{strategy} seed {seed} -> {100 * b:.1f}%: mIoU {r['miou']:.4f} "
                  f"(score {score_secs:.1f} s, train {secs:.0f} s)", flush=True)
            res.add("points", point(level, strategy, seed, b, state, pool, r,
                                    train_seconds=secs, score_seconds=score_secs))
            if k == 1:
                res.add("timing", {"level": level, "strategy": strategy, "seed": seed,
                                   "score_seconds_pool": score_secs,
                                   "unlabelled_images": len(pool) - state0.labelled_images,
                                   "round_train_seconds": secs})


# ---- summary and plot ---------------------------------------------------------------------


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    full = [f["miou"] for f in data["full"]]
    full_miou = statistics.mean(full) if full else None
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for p in data["points"]:
        groups.setdefault((p["level"], p["strategy"], p["budget_fraction"]), []).append(p)
    curves = []
    for (level, strategy, b), pts in sorted(groups.items()):
        vals = [p["miou"] for p in pts]
        frac = [p["image_fraction" if level == "image" else "pixel_fraction"] for p in pts]
        curves.append({
            "strategy": strategy, "level": level, "budget_fraction": b,
            "pixel_fraction": statistics.mean(p["pixel_fraction"] for p in pts),
            "image_fraction": statistics.mean(p["image_fraction"] for p in pts),
            "labelled_fraction": statistics.mean(frac),
            "miou_mean": statistics.mean(vals),
            "miou_std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "seeds": sorted(p["seed"] for p in pts),
            "relative_to_full": statistics.mean(vals) / full_miou if full_miou else None,
        })
    to95: dict[str, float | None] = {}
    for c in curves:
        key = f"{c['level']}/{c['strategy']}"
        to95.setdefault(key, None)
        if full_miou and c["miou_mean"] >= 0.95 * full_miou and (
                to95[key] is None or c["labelled_fraction"] < to95[key]):
            to95[key] = c["labelled_fraction"]
    timing = data.get("timing", [])
    return {
        "full_miou": full_miou,
        "full_miou_std": statistics.stdev(full) if len(full) > 1 else 0.0,
        "curves": curves, "to95": to95,
        "scoring_vs_training": [
            {**t, "ratio": t["score_seconds_pool"] / t["round_train_seconds"]} for t in timing],
    }


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for ax, level, xlabel in ((axes[0], "image", "labelled images (% of pool)"),
                              (axes[1], "region", "labelled pixels (% of pool)")):
        for strategy in STRATEGIES_BY_LEVEL[level]:
            cs = [c for c in data["curves"] if c["level"] == level and c["strategy"] == strategy]
            if not cs:
                continue
            x = np.array([100 * c["labelled_fraction"] for c in cs])
            y = np.array([c["miou_mean"] for c in cs])
            s = np.array([c["miou_std"] for c in cs])
            ax.plot(x, y, marker="o", label=strategy)
            ax.fill_between(x, y - s, y + s, alpha=0.15)
        if data.get("full_miou"):
            ax.axhline(data["full_miou"], color="k", lw=1, label="full supervision")
            ax.axhline(0.95 * data["full_miou"], color="k", lw=1, ls="--", label="95% of full")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([100 * c["labelled_fraction"] for c in data["curves"]
                       if c["level"] == level and c["strategy"] == "random"])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("val mIoU")
        ax.set_title(f"{level} level")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("segloop active learning on CamVid (96x128, mean +- std over seeds)")
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def markdown_table(data: dict[str, Any]) -> str:
    """mIoU mean +- std (and % of full supervision) per level, strategy and budget."""
    full = data.get("full_miou")
    lines = [f"Full supervision (same model, {data['protocol']['full_steps']} steps): "
             + (f"{full:.4f} +- {data['full_miou_std']:.4f} mIoU over "
                f"{len(data['full'])} seed(s)" if full else "not run yet"), ""]
    for level, unit in (("image", "images"), ("region", "pixels")):
        cs = [c for c in data["curves"] if c["level"] == level]
        budgets = sorted({c["budget_fraction"] for c in cs})
        if not cs:
            continue
        lines.append(f"| {level} level: % of {unit} | "
                     + " | ".join(f"{100 * b:g}%" for b in budgets) + " | to 95% of full |")
        lines.append("|---" * (len(budgets) + 2) + "|")
        for strategy in STRATEGIES_BY_LEVEL[level]:
            row = {c["budget_fraction"]: c for c in cs if c["strategy"] == strategy}
            if not row:
                continue
            cells = []
            for b in budgets:
                c = row.get(b)
                if c is None:
                    cells.append("-")
                    continue
                rel = f" ({100 * c['relative_to_full']:.0f}%)" if c["relative_to_full"] else ""
                cells.append(f"{c['miou_mean']:.3f} +- {c['miou_std']:.3f}{rel}")
            reach = data["to95"].get(f"{level}/{strategy}")
            cells.append("-" if reach is None else f"{100 * reach:.1f}%")
            lines.append(f"| {strategy} (n={len(next(iter(row.values()))['seeds'])}) | "
                         + " | ".join(cells) + " |")
        lines.append("")
    ratios = data.get("scoring_vs_training", [])
    if ratios:
        worst = max(ratios, key=lambda t: t["ratio"])
        lines.append(f"Scoring the pool vs one training round: at most {worst['ratio']:.2f}x "
                     f"({worst['level']}/{worst['strategy']}: {worst['score_seconds_pool']:.1f} s "
                     f"for {worst['unlabelled_images']} images vs "
                     f"{worst['round_train_seconds']:.0f} s of training).")
    return "\n".join(lines)


# ---- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if args.quick:
        args.seeds, args.first_steps, args.round_steps, args.full_steps = (0,), 150, 60, 300
        if args.out == str(HERE / "results" / "al_camvid.json"):
            out = out.with_name("al_camvid_quick.json")
    image_budgets = IMAGE_BUDGETS[:3:2] if args.quick else IMAGE_BUDGETS
    region_budgets = REGION_BUDGETS[:3:2] if args.quick else REGION_BUDGETS
    protocol = {k: v for k, v in vars(args).items()
                if k not in ("only", "out", "plot_only", "table")}
    protocol.update(image_budgets=list(image_budgets), region_budgets=list(region_budgets),
                    pool_limit=60 if args.quick else None)
    protocol["seeds"] = list(protocol["seeds"])
    protocol["size"] = list(protocol["size"])
    res = Results(out, protocol)
    if args.plot_only or args.table:
        res.data.update(summarize(res.data))
        plot(res.data, out.with_suffix(".png"))
        if args.table:
            print(markdown_table(res.data))
        return 0
    torch.set_num_threads(os.cpu_count() or 1)
    size = tuple(args.size)
    pool_arrays = stack_split(CamVidLayout(args.root, args.pool_split, CAMVID), size,
                              desc="pool")
    if args.quick:
        pool_arrays = SplitArrays(pool_arrays.images[:60], pool_arrays.labels[:60],
                                  pool_arrays.image_ids[:60], pool_arrays.names[:60],
                                  pool_arrays.original_hw[:60])
    ev = stack_split(CamVidLayout(args.root, args.eval_split, CAMVID), size, desc="eval")
    image_pool = Pool(pool_arrays, (), None, None)
    regions, counts = compute_regions(pool_arrays,
                                      ActiveConfig(region={"n_segments": args.n_segments}))
    region_pool = Pool(pool_arrays, (), regions, counts)
    parts = args.only or (["full"] + [f"{lv}/{s}" for lv, ss in STRATEGIES_BY_LEVEL.items()
                                      for s in ss])
    for name in parts:
        if name != "full" and (name.count("/") != 1 or name.split("/")[1] not in STRATEGIES):
            raise SystemExit(f"--only: unknown part {name!r} (full, image/<s>, region/<s>)")
    for seed in args.seeds:
        if "full" in parts:
            run_full(args, image_pool, ev, res, seed)
        for level, budgets, pool in (("image", image_budgets, image_pool),
                                     ("region", region_budgets, region_pool)):
            strategies = [p.split("/")[1] for p in parts if p.startswith(f"{level}/")]
            if strategies:
                run_level(args, level, strategies, pool, ev, res, seed, budgets)
    res.save()
    plot(res.data, out.with_suffix(".png"))
    print(json.dumps({"full_miou": res.data["full_miou"], "to95": res.data["to95"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
