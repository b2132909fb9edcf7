"""Region quality of segloop's region sources on CamVid val (a benchmark, not a test).

What a region-level query is worth depends on how well its regions follow the ground truth:
a region that straddles two classes costs the annotator a wrong or a split label. This script
scores each region source with the metrics of Kim's dissertation (2022, eq. 3.9-3.12;
docs/algorithms.md §4c) through :func:`segloop.active.regions.region_quality`.

Protocol (fixed):

- Images: CamVid ``val`` (101 images, 360x480; ``--limit N`` takes the first N by name).
  Every source is scored on every image at the working resolution 96x128 (images bilinear,
  labels nearest, as the training code resizes) and at the native 360x480
  (``--no-native`` skips it). Class 11 (void) is ignored.
- Metrics, the mean over images of the per-image values: UE = Neubert and Protzel's
  undersegmentation error (thesis eq. 3.9, ``ue_np``), ASA (achievable segmentation
  accuracy), BR and BP (boundary recall / precision within epsilon = 2 pixels, Chebyshev,
  at the evaluation resolution: 2 pixels at 96x128 are 7.5 native pixels, so BR and BP are
  not comparable across resolutions), regions per image (regions with a valid pixel) and
  seconds per image (wall clock, single-threaded: ``--threads 1``).
- Sources:
  1. ``slic``: :func:`slic_regions` at n_segments 25, 50, 100, 150 (compactness 10), run on
     the image at the evaluation resolution.
  2. ``cluster/lraspp-low+high`` and ``cluster/lraspp-high``: the greedy low-first
     clustering (:func:`cluster_feature_map`, Kim 2022) at tau 0.3, 0.5, 0.7 on the
     backbone features of the LR-ASPP MobileNetV3 that ``al_camvid.py`` trains with full
     supervision on CamVid train (96x128, 2000 steps, seed 0), read from its cache
     (``benchmarks/.cache/al_camvid/full/lraspp-2000-seed0.safetensors``; this script trains
     nothing and records the source as skipped when the file is missing). The model runs on
     the 96x128 image; its backbone gives ``low`` (40 channels, stride 8: a 12x16 grid) and
     ``high`` (960 channels, stride 16: 6x8). ``low+high``: both L2-normalised per position,
     ``high`` bilinearly upsampled to the 12x16 grid and re-normalised, concatenated (so a
     cosine is the mean of the two cosines); ``high``: ``high`` alone at its own 6x8 grid.
     The cluster map is upsampled to the evaluation size by nearest neighbour. Its seconds
     include the model's forward pass (shared by the three taus). The model has seen every
     CamVid train label: this is clustering on *supervised* features, an upper end for a
     label-free feature extractor, not a label-free figure.
  3. ``cluster/rgb`` (control): the same clustering on raw RGB (0..255, +0.5 so that no
     vector is zero) average-pooled to the 12x16 grid. Raw RGB vectors are all positive, so
     their cosine only sees chromaticity and is above 0.95 almost everywhere in CamVid's
     grey street scenes: tau 0.95 (the value first suggested for this control) leaves about
     one region per image, and it is kept as a row to show that; tau 0.9998 gives a region
     count comparable to the trained features' tau 0.5 and is the control to compare with.
  4. ``grid``: every 12x16 grid cell a region: the ceiling of any clustering on that grid
     (a cluster map upsampled from 12x16 cannot follow a boundary inside a cell).
  5. ``sam-tiny``: grid-mode SAM (10x10 points, best mask per point, painted by predicted
     IoU with :func:`masks_to_regions`) with the *tiny random-weight* SAM, on the 96x128
     image, upsampled. Real SAM weights are not on this machine: this row checks plumbing
     and cost only and is no quality figure (``meaningful: false``). ``--no-sam`` skips it.
- Reference: Kim 2022, Table 3.5 (PASCAL VOC train, DINO ViT-B/8 keys for the clustering):
  SLIC at 27.7 regions UE 0.164, ASA 0.92; clustering at tau 0.3, 28.6 regions, UE 0.083,
  ASA 0.960. VOC is not CamVid (other images and classes; VOC's ignore band along object
  outlines removes the hardest pixels), so compare trends at equal region counts, not values.

Writes ``benchmarks/results/regions.json`` (``protocol``, ``rows``, ``reference``; no paths
of the machine) and ``regions.png`` (UE, ASA, BR, BP against regions per image). Run it alone
(two torch processes on 2 cores slow each other down):

    OMP_NUM_THREADS=1 python benchmarks/regions.py            # all 101 images, ~2 min
    OMP_NUM_THREADS=1 python benchmarks/regions.py --limit 5 --out /tmp/regions.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from segloop.active.regions import masks_to_regions, region_quality, slic_regions
from segloop.pseudolabel.clustering import cluster_feature_map
from segloop.train.arrays import resize_pair

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHECKPOINT = "benchmarks/.cache/al_camvid/full/lraspp-2000-seed0.safetensors"  # repo-relative
TRAIN_HINT = ("train it with: python benchmarks/al_camvid.py --only full --seeds 0 "
              "--curve-steps (this script trains nothing)")
WORK_HW = (96, 128)
SLIC_SEGMENTS = (25, 50, 100, 150)
COMPACTNESS = 10.0
TAUS = (0.3, 0.5, 0.7)
RGB_TAUS = (0.95, 0.9998)
RGB_COMPARABLE_TAU = 0.9998
STRIDE = 8  # the LR-ASPP low-level grid; also the RGB control's and the grid row's cell
SAM_POINTS = 10
EPSILON = 2
METRICS = ("ue", "asa", "br", "bp", "regions_per_image", "seconds_per_image")
FIELDS = ("source", "setting", "resolution", *METRICS, "images", "meaningful", "note")
NOT_QUALITY = "random weights: plumbing only, not a quality figure"
REFERENCE = {
    "source": ("S. Kim, A Study on Weakly Supervised Semantic Segmentation Using Image "
               "Masking and Clustering, Ph.D. dissertation, Seoul National University, 2022, "
               "Table 3.5 (docs/algorithms.md §4c)"),
    "dataset": "PASCAL VOC 2012 train (not CamVid: compare trends at equal region counts)",
    "rows": [
        {"source": "slic", "setting": "", "regions_per_image": 27.7, "ue": 0.164,
         "asa": 0.92},
        {"source": "cluster (DINO ViT-B/8 keys)", "setting": "tau=0.3",
         "regions_per_image": 28.6, "ue": 0.083, "asa": 0.960},
    ],
}

#: working-resolution (h, w, 3) uint8 image -> named (D, h', w') feature maps
FeatureFn = Callable[[np.ndarray], dict[str, np.ndarray]]
#: working-resolution (h, w, 3) uint8 image -> (h, w) int32 region map
RegionFn = Callable[[np.ndarray], np.ndarray]
#: (resolution name, (H, W), image, labels) of one evaluation size
Eval = tuple[str, tuple[int, int], np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Scene:
    """One evaluation image at its native size: (H, W, 3) uint8 RGB and (H, W) uint8 labels."""

    name: str
    image: np.ndarray
    label: np.ndarray


@dataclass
class Tally:
    """Per-image metrics of one (source, setting, resolution)."""

    values: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in METRICS})

    def add(self, quality: dict[str, float | int], seconds: float) -> None:
        self.values["ue"].append(float(quality["ue_np"]))
        self.values["asa"].append(float(quality["asa"]))
        self.values["br"].append(float(quality["br"]))
        self.values["bp"].append(float(quality["bp"]))
        self.values["regions_per_image"].append(float(quality["num_regions"]))
        self.values["seconds_per_image"].append(seconds)


def resize_ids(ids: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(h, w) integer map -> ``hw`` by nearest neighbour, sampling at pixel centres."""
    h0, w0 = ids.shape
    h, w = hw
    if (h0, w0) == (h, w):
        return ids
    rows = np.minimum(((np.arange(h) + 0.5) * h0 / h).astype(np.int64), h0 - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * w0 / w).astype(np.int64), w0 - 1)
    return ids[rows[:, None], cols[None, :]]


def grid_hw(work_hw: tuple[int, int]) -> tuple[int, int]:
    """The stride-8 grid of a working size (12x16 for 96x128), at least 1x1."""
    return max(1, math.ceil(work_hw[0] / STRIDE)), max(1, math.ceil(work_hw[1] / STRIDE))


def rgb_grid(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, h, w) float32 raw RGB (+0.5, never zero) average-pooled."""
    x = torch.tensor(image).permute(2, 0, 1)[None].float() + 0.5
    return F.adaptive_avg_pool2d(x, hw)[0].numpy()


def lraspp_features(model: torch.nn.Module) -> FeatureFn:
    """Backbone features of segloop's LR-ASPP (``_TorchvisionSeg``: ``norm`` + torchvision
    ``net`` whose ``backbone`` returns ``low`` (stride 8) and ``high`` (stride 16)).

    Returns ``lraspp-low+high`` (both unit-norm per position, ``high`` upsampled bilinearly
    to ``low``'s grid, concatenated and divided by sqrt(2)) and ``lraspp-high`` (unit-norm,
    own grid)."""
    net = getattr(model, "net", None)
    if net is None or not hasattr(net, "backbone") or not hasattr(model, "norm"):
        raise TypeError("lraspp_features needs segloop's torchvision LR-ASPP wrapper "
                        f"(norm + net.backbone), got {type(model).__name__}")
    model.eval()

    def run(image: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.tensor(image).permute(2, 0, 1)[None].float() / 255
        with torch.inference_mode():
            feats = net.backbone(model.norm(x))
        low = F.normalize(feats["low"].float(), dim=1)
        high = F.normalize(feats["high"].float(), dim=1)
        up = F.normalize(F.interpolate(high, size=low.shape[-2:], mode="bilinear",
                                       align_corners=False), dim=1)
        both = torch.cat([low, up], dim=1) / math.sqrt(2.0)
        return {"lraspp-low+high": both[0].numpy(), "lraspp-high": high[0].numpy()}

    return run


def sam_regions_fn(points_per_side: int = SAM_POINTS, seed: int = 0) -> RegionFn:
    """Grid-mode tiny random-weight SAM: best mask per point painted by predicted IoU."""
    from segloop.embed.extract import MaskEmbedder
    from segloop.models.sam import load_sam

    embedder = MaskEmbedder(load_sam("tiny", None, device="cpu", seed=seed),
                            points_per_side=points_per_side,
                            points_per_batch=points_per_side**2)

    def run(image: np.ndarray) -> np.ndarray:
        got = embedder([np.ascontiguousarray(image)])[0]
        return masks_to_regions(got.masks, got.iou)

    return run


def _res_name(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def measure(
    scenes: Iterable[Scene],
    ignore_index: int,
    *,
    work_hw: tuple[int, int] = WORK_HW,
    native: bool = True,
    features: FeatureFn | None = None,
    features_skipped: str = "no feature extractor given",
    sam: RegionFn | None = None,
    sam_skipped: str = "not run",
    slic_segments: Sequence[int] = SLIC_SEGMENTS,
    taus: Sequence[float] = TAUS,
    rgb_taus: Sequence[float] = RGB_TAUS,
    epsilon: int = EPSILON,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Score every source on every scene; one row per (source, setting, resolution).

    ``features`` (None: the trained-feature rows are recorded as skipped with
    ``features_skipped``) and ``sam`` (likewise) run on the working-resolution image; their
    maps are upsampled to each evaluation size. Scenes whose labels are all ``ignore_index``
    at some resolution are left out of it. Rows follow :data:`FIELDS`; a skipped row has
    ``None`` metrics and a ``skipped`` reason.
    """
    tallies: dict[tuple[str, str, str], Tally] = {}
    feature_names: list[str] = []

    def tally(source: str, setting: str, res: str) -> Tally:
        return tallies.setdefault((source, setting, res), Tally())

    for k, scene in enumerate(scenes):
        work_img, _ = resize_pair(scene.image, scene.label, work_hw)
        native_hw = (int(scene.label.shape[0]), int(scene.label.shape[1]))
        sizes = [work_hw] + ([native_hw] if native else [])
        evals: list[Eval] = []
        for hw in dict.fromkeys(sizes):  # native == working size: measured once
            img, lab = resize_pair(scene.image, scene.label, hw)
            assert lab is not None
            if (lab != ignore_index).any():
                res = _res_name(hw) if hw == work_hw else "native"
                evals.append((res, hw, img, lab))

        def score(source: str, setting: str, ids: np.ndarray, seconds: float,
                  evals: list[Eval] = evals) -> None:
            """Upsample a working-grid map to each evaluation size and score it there."""
            for res, hw, _, lab in evals:
                t = time.perf_counter()
                r = resize_ids(ids, hw)
                up = time.perf_counter() - t
                tally(source, setting, res).add(
                    region_quality(r, lab, ignore_index, epsilon=epsilon), seconds + up)

        for n in slic_segments:  # SLIC runs at each evaluation size
            for res, _, img, lab in evals:
                t = time.perf_counter()
                ids = slic_regions(img, n_segments=n, compactness=COMPACTNESS)
                secs = time.perf_counter() - t
                tally("slic", f"n_segments={n}", res).add(
                    region_quality(ids, lab, ignore_index, epsilon=epsilon), secs)

        ghw = grid_hw(work_hw)
        if features is not None:
            t = time.perf_counter()
            maps = features(work_img)
            t_feat = time.perf_counter() - t
            for name, fmap in maps.items():
                if name not in feature_names:
                    feature_names.append(name)
                for tau in taus:
                    t = time.perf_counter()
                    ids = cluster_feature_map(fmap, tau)
                    score(f"cluster/{name}", f"tau={tau:g}", ids,
                          t_feat + time.perf_counter() - t)

        t = time.perf_counter()
        rgb = rgb_grid(work_img, ghw)
        t_rgb = time.perf_counter() - t
        for tau in rgb_taus:
            t = time.perf_counter()
            ids = cluster_feature_map(rgb, tau)
            score("cluster/rgb", f"tau={tau:g}", ids, t_rgb + time.perf_counter() - t)
        score("grid", f"{ghw[0]}x{ghw[1]} cells",
              np.arange(ghw[0] * ghw[1], dtype=np.int32).reshape(ghw), 0.0)

        if sam is not None:
            t = time.perf_counter()
            ids = sam(work_img)
            score("sam-tiny", f"{SAM_POINTS}x{SAM_POINTS} points", ids,
                  time.perf_counter() - t)
        if progress:
            print(f"  {k + 1} images", end="\r", file=sys.stderr, flush=True)

    rows = [_row(src, setting, res, t) for (src, setting, res), t in tallies.items()]
    resolutions = sorted({res for (_, _, res) in tallies}, key=lambda r: r == "native")
    if features is None:
        for name in ("lraspp-low+high", "lraspp-high"):
            for tau in taus:
                for res in resolutions:
                    rows.append(_skipped(f"cluster/{name}", f"tau={tau:g}", res,
                                         features_skipped))
    if sam is None:
        for res in resolutions:
            rows.append(_skipped("sam-tiny", f"{SAM_POINTS}x{SAM_POINTS} points", res,
                                 sam_skipped))
    order = ["slic", *[f"cluster/{n}" for n in ("lraspp-low+high", "lraspp-high")],
             "cluster/rgb", "grid", "sam-tiny"]
    rows.sort(key=lambda r: (r["resolution"] == "native",
                             order.index(r["source"]) if r["source"] in order else len(order),
                             _setting_value(r["setting"])))
    return rows


def _setting_value(setting: str) -> float:
    """The number in 'n_segments=25' / 'tau=0.3' (0 for other settings), for sorting."""
    try:
        return float(setting.partition("=")[2])
    except ValueError:
        return 0.0


def _row(source: str, setting: str, res: str, tally: Tally) -> dict[str, Any]:
    means = {k: float(np.mean(v)) for k, v in tally.values.items()}
    meaningful, note = _describe(source, setting)
    return {"source": source, "setting": setting, "resolution": res,
            **{k: round(means[k], 4 if k != "seconds_per_image" else 5) for k in METRICS},
            "images": len(tally.values["ue"]), "meaningful": meaningful, "note": note}


def _skipped(source: str, setting: str, res: str, reason: str) -> dict[str, Any]:
    meaningful, note = _describe(source, setting)
    return {"source": source, "setting": setting, "resolution": res,
            **dict.fromkeys(METRICS), "images": 0, "meaningful": meaningful, "note": note,
            "skipped": reason}


def _describe(source: str, setting: str) -> tuple[bool, str]:
    if source == "slic":
        return True, f"skimage SLIC, compactness {COMPACTNESS:g}, on the image at this size"
    if source.startswith("cluster/lraspp"):
        grid = "12x16 (stride 8)" if source.endswith("low+high") else "6x8 (stride 16)"
        return True, (f"greedy low-first clustering of the fully supervised LR-ASPP's "
                      f"backbone features at {grid} (model run at 96x128; supervised "
                      "features, not label-free); seconds include the forward pass")
    if source == "cluster/rgb":
        if setting == f"tau={RGB_COMPARABLE_TAU:g}":
            return True, ("control: raw RGB pooled to 12x16; this tau gives a region count "
                          "comparable to the trained features' tau 0.5")
        return True, ("control: raw RGB pooled to 12x16; all-positive RGB vectors have "
                      "cosine > tau almost everywhere, so this tau collapses the image")
    if source == "grid":
        return True, "every grid cell a region: the ceiling of any clustering on this grid"
    if source == "sam-tiny":
        return False, NOT_QUALITY
    return True, ""


def protocol(args: argparse.Namespace, images: int, native_hw: list[tuple[int, int]]
             ) -> dict[str, Any]:
    """What decides the numbers (no machine paths)."""
    return {
        "dataset": "CamVid val", "images": images, "limit": args.limit,
        "working_resolution": list(WORK_HW),
        "native_resolutions": sorted({_res_name(hw) for hw in native_hw}),
        "resize": "images bilinear, labels nearest; region maps from the working "
                  "resolution upsampled by nearest neighbour",
        "ignore_index": 11, "epsilon": EPSILON, "ue": "Neubert-Protzel, thesis eq. 3.9 (ue_np)",
        "mean": "over images of the per-image values",
        "slic": {"n_segments": list(SLIC_SEGMENTS), "compactness": COMPACTNESS},
        "cluster": {"taus": list(TAUS), "checkpoint": CHECKPOINT,
                    "model": "lraspp, full supervision on CamVid train, 96x128, 2000 steps, "
                             "seed 0",
                    "features": {"lraspp-low+high": "backbone low (40 ch, 12x16) and high "
                                 "(960 ch, upsampled to 12x16), each unit-norm, concatenated",
                                 "lraspp-high": "backbone high (960 ch, 6x8), unit-norm"}},
        "rgb_control": {"taus": list(RGB_TAUS), "comparable_tau": RGB_COMPARABLE_TAU,
                        "grid": list(grid_hw(WORK_HW))},
        "sam": {"variant": "tiny (random weights)", "points_per_side": SAM_POINTS,
                "run": not args.no_sam},
        "threads": args.threads,
    }


def write_results(rows: list[dict[str, Any]], proto: dict[str, Any], out: Path) -> None:
    """``out`` (JSON) and its ``.png`` plot."""
    data = {"protocol": proto, "rows": rows, "reference": REFERENCE}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    plot(data, out.with_suffix(".png"))


def plot(data: dict[str, Any], path: Path) -> None:
    """UE, ASA, BR and BP against regions per image; one line per source and resolution.

    Rows with fewer than 2 regions per image (the collapsed RGB control) are not drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 8.5), constrained_layout=True)
    rows = [r for r in data["rows"]
            if r.get("ue") is not None and r["regions_per_image"] >= 2]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["resolution"]), []).append(r)
    colours: dict[str, str] = {}
    for src, _ in groups:
        colours.setdefault(src, f"C{len(colours)}")
    for ax, metric, title in zip(axes.flat, ("ue", "asa", "br", "bp"),
                                 ("UE (Neubert-Protzel, lower is better)",
                                  "ASA (higher is better)", "boundary recall (eps 2 px)",
                                  "boundary precision (eps 2 px)"), strict=True):
        for (src, res), rs in groups.items():
            rs = sorted(rs, key=lambda r: r["regions_per_image"])
            fake = not all(r["meaningful"] for r in rs)
            label = f"{src} @ {res}" + (" (random weights)" if fake else "")
            ax.plot([r["regions_per_image"] for r in rs], [r[metric] for r in rs],
                    marker="x" if fake else "o", ls="-" if res != "native" else "--",
                    color="grey" if fake else colours[src], alpha=0.5 if fake else 1.0,
                    label=label)
        if metric in ("ue", "asa"):
            for ref, marker in zip(data["reference"]["rows"], ("*", "D"), strict=True):
                ax.scatter([ref["regions_per_image"]], [ref[metric]], marker=marker, s=90,
                           color="k", zorder=5,
                           label=f"thesis (VOC): {ref['source']} {ref['setting']}".strip())
        ax.set_xscale("log")
        ax.set_xlabel("regions per image")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    n = data["protocol"].get("images")
    fig.suptitle(f"Region quality on CamVid val ({n} images; solid: 96x128, dashed: native; "
                 "rows under 2 regions per image not drawn)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_features(path: Path) -> tuple[FeatureFn | None, str]:
    """The trained LR-ASPP's feature function, or None and why it is skipped."""
    from segloop.config import parse_config
    from segloop.data.classes import CAMVID
    from segloop.errors import SegloopError
    from segloop.train.checkpoint import load_checkpoint
    from segloop.train.factory import build_from_config

    if not path.is_file():
        return None, f"checkpoint {CHECKPOINT} not found; {TRAIN_HINT}"
    cfg = parse_config({"train": {"model": "lraspp", "steps": 2000}})
    model = build_from_config(cfg.train, CAMVID.num_classes)
    try:
        load_checkpoint(model, path)
    except SegloopError as exc:
        return None, f"checkpoint {CHECKPOINT} does not load ({type(exc).__name__}); " \
                     f"{TRAIN_HINT}"
    return lraspp_features(model), ""


def camvid_val(root: str, limit: int | None) -> list[Scene]:
    from segloop.data.classes import CAMVID
    from segloop.data.datasets import CamVidLayout

    ds = CamVidLayout(root, "val", CAMVID)
    samples = list(ds.samples())[:limit]
    scenes = []
    for s in samples:
        loaded = ds.load(s)
        assert loaded.label is not None
        scenes.append(Scene(s.name, loaded.image, loaded.label))
    return scenes


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    lines = ["| source | setting | res | regions/img | UE | ASA | BR | BP | s/img | meaningful |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['source']} | {r['setting']} | {r['resolution']} | skipped: "
                         f"{r['skipped']} ||||||")
            continue
        lines.append(
            f"| {r['source']} | {r['setting']} | {r['resolution']} | "
            f"{r['regions_per_image']:.1f} | {r['ue']:.3f} | {r['asa']:.3f} | {r['br']:.3f} | "
            f"{r['bp']:.3f} | {r['seconds_per_image']:.4f} | "
            f"{'yes' if r['meaningful'] else 'no'} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(REPO.parent / "shared/datasets/camvid"))
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N val images (by name)")
    p.add_argument("--out", default=str(HERE / "results" / "regions.json"))
    p.add_argument("--no-native", action="store_true", help="only the 96x128 evaluation")
    p.add_argument("--no-sam", action="store_true", help="skip the tiny random-weight SAM")
    p.add_argument("--threads", type=int, default=1, help="torch threads (timings: 1)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from segloop.data.classes import CAMVID

    start = time.perf_counter()
    scenes = camvid_val(args.root, args.limit)
    features, why = load_features(REPO / CHECKPOINT)
    if features is None:
        print(f"trained-feature clustering skipped: {why}", file=sys.stderr)
    sam = None if args.no_sam else sam_regions_fn()
    rows = measure(scenes, CAMVID.ignore_index, native=not args.no_native, features=features,
                   features_skipped=why, sam=sam,
                   sam_skipped="--no-sam" if args.no_sam else "not run", progress=True)
    out = Path(args.out)
    write_results(rows, protocol(args, len(scenes), [s.label.shape for s in scenes]), out)
    print(table(rows))
    print(f"{len(scenes)} images in {time.perf_counter() - start:.0f} s; wrote {out.name} "
          f"and {out.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
