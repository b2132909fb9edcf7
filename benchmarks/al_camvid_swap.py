"""How much of the CamVid benchmark is one frame? Train fixed 18-image label sets (5% of the
pool) with the benchmark's recipe and swap a single image: the pool frame filmed 1.3 s before
the evaluation clip (``0016E5_07920``) against one from elsewhere in the same sequence.

The two sets are the seed-0 chains of the image-level protocol at 5%: ``random`` (random
start and picks) and ``coverage`` (TypiClust start, then entropy with ``diversity:
coverage``), as printed by the diagnosis that found the effect. Every run trains afresh
with training seed 1, as round 1 of the benchmark does.

    .venv/bin/python benchmarks/al_camvid_swap.py     # ~22 minutes on 2 cores

Writes ``benchmarks/results/al_camvid_swap.json`` and ``al_camvid_swap.png``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import al_camvid as bench  # noqa: E402

from segloop.active.fit import fit_round  # noqa: E402
from segloop.active.pool import Pool  # noqa: E402
from segloop.active.state import LabelState  # noqa: E402
from segloop.data.classes import CAMVID  # noqa: E402
from segloop.data.datasets import CamVidLayout  # noqa: E402
from segloop.train.arrays import stack_split  # noqa: E402

NEAR = "0016E5_07920.png"  # 39 frames (1.3 s) before val's first frame
ELSEWHERE = "0016E5_06360.png"  # 53 s before it
RANDOM = ["0001TP_007890", "0001TP_008220", "0001TP_008340", "0006R0_f01140", "0006R0_f02790",
          "0006R0_f03270", "0006R0_f03330", "0006R0_f03720", "0016E5_00840", "0016E5_00870",
          "0016E5_01560", "0016E5_02130", "0016E5_04530", "0016E5_05460", "0016E5_07380",
          "0016E5_07530", "0016E5_08550"]
COVERAGE = ["0001TP_008250", "0006R0_f02280", "0006R0_f02940", "0006R0_f03780",
            "0016E5_02340", "0016E5_04860", "0016E5_07170", "0001TP_007710", "0006R0_f00990",
            "0006R0_f01860", "0006R0_f01980", "0006R0_f03180", "0016E5_01920", "0016E5_02220",
            "0016E5_02250", "0016E5_05190", "0016E5_05760"]
SETS = {
    "random (with the near frame)": [f"{n}.png" for n in RANDOM] + [NEAR],
    "random, near frame swapped out": [f"{n}.png" for n in RANDOM] + [ELSEWHERE],
    "coverage (without it)": [f"{n}.png" for n in COVERAGE] + [ELSEWHERE],
    "coverage, near frame swapped in": [f"{n}.png" for n in COVERAGE] + [NEAR],
}


def main() -> int:
    torch.set_num_threads(os.cpu_count() or 1)
    args = bench.parse_args([])
    arrays = stack_split(CamVidLayout(args.root, "train", CAMVID), tuple(args.size),
                         desc="pool")
    ev = stack_split(CamVidLayout(args.root, "val", CAMVID), tuple(args.size), desc="eval")
    pool = Pool(arrays, (), None, None)
    index = {n: i for i, n in enumerate(arrays.names)}
    cfg = bench.recipe_config(args, "image", "entropy", 0)
    assert arrays.labels is not None
    rows = []
    for name, images in SETS.items():
        state = LabelState.empty(pool, bench.IGNORE)
        for n in images:
            state.apply(pool, index[n], [-1], arrays.labels[index[n]].numpy())
        model, secs = fit_round(pool, state, state.labels, cfg, 1, bench.CPU, progress=False)
        r = bench.miou(model, ev)
        near = len(bench.near_eval(images, ev.names))
        print(f"{name}: mIoU {r['miou']:.4f} ({near} near val, {secs:.0f} s)", flush=True)
        rows.append({"set": name, "images": len(images), "images_near_eval": near,
                     "miou": r["miou"], "iou": r["iou"], "train_seconds": secs})
    out = bench.HERE / "results" / "al_camvid_swap.json"
    result = {"protocol": {"size": list(args.size), "model": args.model, "steps": args.steps,
                           "train_seed": 1, "near": NEAR, "elsewhere": ELSEWHERE},
              "classes": list(CAMVID.names), "sets": rows}
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out)
    plot(rows, out.with_suffix(".png"))
    return 0


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    colours = ["tab:green" if r["images_near_eval"] else "tab:gray" for r in rows]
    ax.barh([r["set"] for r in rows], [r["miou"] for r in rows], color=colours)
    for i, r in enumerate(rows):
        ax.text(r["miou"] + 0.005, i, f"{r['miou']:.3f}", va="center")
    ax.set_xlabel("val mIoU (18 labelled images, LR-ASPP 2000 steps)")
    ax.set_title("One frame next to the val clip (green: labelled)")
    ax.invert_yaxis()
    ax.set_xlim(0, max(r["miou"] for r in rows) * 1.2)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
