"""Seed quality on CamVid: pseudo-labels from the active-learning model's own softmax, with and
without feature clustering + seeded region growing (Kim 2022, ch. 3; docs/algorithms.md
§3), scored against ground truth, and what training on them is worth (a benchmark,
not a test).

Real SAM / Stable Diffusion weights are not on this machine, so the seeds come from what the
active-learning loop already has: the model of its last round.

Protocol (fixed; ``--guard-frames 300`` protocol of ``al_camvid.py``, seed 0):

- Pool: CamVid ``train`` at 96x128 (images bilinear, labels nearest) minus the 18 frames
  filmed within 300 frames of the val clip: 349 images. Evaluation: CamVid ``val`` (101).
- Labelled set L: the image-level ``random`` chain of ``al_camvid.py`` at 10% of the images
  (round 2 of the budgets 2, 5, 10, 20%): 35 images. L is *replayed*, not stored:
  ``initial_choice`` and ``select_round`` with the chain's config and seed reproduce its
  picks; random selection scans no model, so nothing is retrained. The replay is checked
  against the chain's record in ``results/al_camvid_guard.json`` (image count and images
  per video sequence; ``protocol.replay_check``).
- Model M: that chain's round-2 model (LR-ASPP MobileNetV3, random init, 2000 steps on L),
  read from ``benchmarks/.cache/al_camvid/image/lraspp-2000-seg100-seed0-guard300/random/
  round2.safetensors`` (trained by ``al_camvid.py``'s ``trained`` if missing: ~5 min).
- Unlabelled set U: every other pool image (314; ``--limit N``: the first N). On each, M's
  softmax P at 96x128 and (same forward pass) its backbone features: ``low`` (40 ch, 12x16)
  and ``high`` (960 ch, 6x8, bilinearly upsampled), each unit-normalised per position,
  concatenated (as ``regions.py``'s ``lraspp-low+high``).
- Seed variants (255 = no seed; CamVid has no background class, so background=None):
  ``argmax`` (every pixel takes M's argmax: the reference at coverage 1);
  ``confident-A`` (A = 0.9, 0.7): max_c P > A takes the argmax;
  ``clusters``: the thesis rule: maps = ``normalise_maps(P, present)`` with present = the
  classes M predicts somewhere in the image (no image tags in active learning); regions =
  ``cluster_feature_map(features, tau, out_hw=(96, 128))``; ``seeds_from_maps(alpha=0.5)``;
  then ``grow_seeds(beta=0.7)`` with P as the class scores (the thesis grows with the
  segmenter's softmax during training; here M's softmax, once, before training);
  ``clusters-nogrow``: the same without growing; ``clusters-tags``: ``clusters`` with
  present = the ground-truth classes of the image (the thesis's image-level labels):
  an oracle, scored only, not available in active learning; ``confident-0.9+grow``:
  ``confident-0.9``'s seeds grown by ``grow_seeds`` over the same regions (beta 0.7, P):
  growing from sparse, precise seeds. Without a background class ``seeds_from_maps`` uses
  no region, so regions act only through growing.
  The region variants are scored at every ``--taus`` (default 0.5, 0.6, 0.7: about 17, 28
  and 48 regions per image with M on the first 10 images); ``--tau`` (0.6, ~28 regions,
  the thesis's ~29 on VOC) is the one trained with.
- Scores, pooled over all pixels of U (ground-truth void excluded): precision = share of
  seeded pixels whose seed equals the ground truth; coverage = seeded share of valid pixels;
  per class c: precision (seeds labelled c that are c), coverage (ground-truth-c pixels that
  got any seed) and recall (... that got seed c); seconds per image (wall clock, batch 1,
  ``--threads``; M's forward pass included in every variant, clustering in every
  region variant).
- Training (``--skip-training`` skips it): a fresh model on L's labels + U's seeds, through
  the library's pseudo-label path: a ``segloop.active.seeds.Seeds`` whose ``labels`` are the
  seeds, merged by ``training_labels`` (a human label wins wherever a pixel was queried;
  seeds never count as labelled) and trained by ``fit_round`` with the chain's recipe
  (``--steps``, default 2000 = the chain's; batch 8, AdamW 2e-3, cosine, flips and scale
  jitter, unweighted cross-entropy, batches drawn in proportion to labelled pixels; seed
  ``1000 * seed + 2`` like round 2). Variants: ``none`` (L only: at 2000 steps that is M
  itself, evaluated; at other steps trained the same way), ``confident-0.9`` and
  ``clusters`` (grown, ``--tau``); ``--train`` takes others (e.g. ``confident-0.9+grow``).
  mIoU on val like ``al_camvid.py``. Models are cached under ``benchmarks/.cache/
  seeds_camvid/`` (key: steps, seed, variant and a digest of the merged labels and the
  recipe), so a rerun only re-scores.

Writes ``benchmarks/results/seeds_camvid.json`` (``protocol``, ``seeds``, ``training``,
``reference``, ``notes``; no machine paths) and ``seeds_camvid.png`` (precision against
coverage per variant; mIoU per training variant). Run it alone on the machine (two torch
processes on 2 cores slow each other down):

    python benchmarks/seeds_camvid.py                  # ~11 min on 2 cores (2 trainings)
    OMP_NUM_THREADS=1 python benchmarks/seeds_camvid.py --limit 10 --skip-training \\
        --out /tmp/seeds.json                          # development: ~15 s
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from segloop.active.fit import fit_round  # noqa: E402
from segloop.active.pool import Pool  # noqa: E402
from segloop.active.seeds import Seeds, training_labels  # noqa: E402
from segloop.active.state import LabelState  # noqa: E402
from segloop.config import Config  # noqa: E402
from segloop.data.image_maps import ImageMaps
from segloop.pseudolabel.cam_seeds import grow_seeds, normalise_maps, seeds_from_maps  # noqa: E402
from segloop.pseudolabel.clustering import cluster_feature_map  # noqa: E402
from segloop.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from segloop.train.factory import build_from_config  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache" / "seeds_camvid"
CPU = torch.device("cpu")
ROUND = 2  # index of 10% in al_camvid.IMAGE_BUDGETS
CONFIDENT_ALPHAS = (0.9, 0.7)
TAUS = (0.5, 0.6, 0.7)
TAU = 0.6
GROW_ALPHAS = (0.9,)
ALPHA = 0.5
BETA = 0.7
TRAIN_VARIANTS = ("none", "confident-0.9", "clusters")
CLUSTER_KINDS = ("clusters", "clusters-nogrow", "clusters-tags")
REGION_KINDS = (*CLUSTER_KINDS, "confident+grow")


@dataclass(frozen=True)
class Variant:
    """One way of making seeds. ``kind``: argmax, confident or one of :data:`REGION_KINDS`."""

    kind: str
    alpha: float | None = None
    tau: float | None = None
    beta: float | None = None

    @property
    def name(self) -> str:
        if self.kind == "confident":
            return f"confident-{self.alpha:g}"
        if self.kind == "confident+grow":
            return f"confident-{self.alpha:g}+grow"
        return self.kind

    @property
    def key(self) -> str:
        """Unique among the variants of a run (the cluster kinds recur at every tau)."""
        return f"{self.name} tau={self.tau:g}" if self.tau is not None else self.name

    def settings(self) -> dict[str, float]:
        return {k: v for k, v in (("alpha", self.alpha), ("tau", self.tau),
                                  ("beta", self.beta)) if v is not None}


def default_variants(taus: Sequence[float] = TAUS, alphas: Sequence[float] = CONFIDENT_ALPHAS,
                     alpha: float = ALPHA, beta: float = BETA,
                     grow_alphas: Sequence[float] = GROW_ALPHAS) -> list[Variant]:
    out = [Variant("argmax", alpha=0.0)]
    out += [Variant("confident", alpha=a) for a in alphas]
    for tau in taus:
        out += [Variant("clusters", alpha=alpha, tau=tau, beta=beta),
                Variant("clusters-nogrow", alpha=alpha, tau=tau),
                Variant("clusters-tags", alpha=alpha, tau=tau, beta=beta)]
        out += [Variant("confident+grow", alpha=a, tau=tau, beta=beta) for a in grow_alphas]
    return out


# --- seeds of one image -------------------------------------------------------------------

def forward(model: nn.Module, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """One (3, H, W) uint8 image -> (C, H, W) float32 softmax and (D, h, w) float32 features
    of segloop's LR-ASPP (``norm`` + torchvision ``net``), from one forward pass: the
    backbone's ``low`` (stride 8) and ``high`` (stride 16, bilinearly upsampled to ``low``'s
    grid), each unit-norm per position, concatenated and divided by sqrt(2) (so a cosine is
    the mean of the two; ``regions.py``'s ``lraspp-low+high``)."""
    backbone = getattr(getattr(model, "net", None), "backbone", None)
    if backbone is None:
        raise TypeError("forward needs segloop's torchvision LR-ASPP wrapper (net.backbone), "
                        f"got {type(model).__name__}")
    got: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _i: Any, out: dict[str, torch.Tensor]) -> None:
        got.update(out)

    handle = backbone.register_forward_hook(keep)
    try:
        with torch.inference_mode():
            logits = model(image[None].float() / 255)
    finally:
        handle.remove()
    low = F.normalize(got["low"].float(), dim=1)
    high = F.normalize(F.interpolate(got["high"].float(), size=low.shape[-2:],
                                     mode="bilinear", align_corners=False), dim=1)
    feats = torch.cat([low, high], dim=1) / math.sqrt(2.0)
    return logits.softmax(1)[0].numpy(), feats[0].numpy()


def confident_seeds(probs: np.ndarray, alpha: float, ignore_index: int) -> np.ndarray:
    """(C, H, W) softmax -> (H, W) uint8: argmax where max_c P > alpha (strict), else
    ``ignore_index``."""
    return np.where(probs.max(axis=0) > alpha, probs.argmax(axis=0),
                    ignore_index).astype(np.uint8)


def cluster_seeds(probs: np.ndarray, regions: np.ndarray, present: np.ndarray, alpha: float,
                  beta: float | None, ignore_index: int) -> np.ndarray:
    """The thesis rule on a softmax: per-present-class normalised maps, seeds above
    ``alpha``, no background; then, with ``beta``, growing over ``regions`` with ``probs``."""
    maps = normalise_maps(probs, present=present)
    seeds = seeds_from_maps(maps, regions, np.arange(probs.shape[0]), alpha, None,
                            ignore_index)
    if beta is not None:
        seeds = grow_seeds(seeds, regions, probs, beta, ignore_index)
    return seeds


def image_seeds(model: nn.Module, image: torch.Tensor, label: np.ndarray,
                variants: Sequence[Variant], num_classes: int, ignore_index: int
                ) -> tuple[dict[str, np.ndarray], dict[str, float], dict[float, int]]:
    """Every variant's (H, W) uint8 seeds of one image, their seconds (forward pass
    included) and the region count per tau. ``label`` (ground truth) is read only for
    ``clusters-tags``' present classes."""
    t = time.perf_counter()
    probs, feats = forward(model, image)
    t_forward = time.perf_counter() - t
    hw = probs.shape[1:]
    predicted = np.bincount(probs.argmax(axis=0).ravel(), minlength=num_classes) > 0
    tags = np.bincount(label[label != ignore_index].ravel().astype(np.int64),
                       minlength=num_classes)[:num_classes] > 0
    regions: dict[float, tuple[np.ndarray, float]] = {}  # tau -> (map, seconds)
    for tau in dict.fromkeys(v.tau for v in variants if v.tau is not None):
        t = time.perf_counter()
        regions[tau] = (cluster_feature_map(feats, tau, out_hw=hw), time.perf_counter() - t)
    seeds: dict[str, np.ndarray] = {}
    secs: dict[str, float] = {}
    for v in variants:
        t = time.perf_counter()
        assert v.alpha is not None
        ids, t_regions = regions[v.tau] if v.tau is not None else (None, 0.0)
        if v.kind in ("argmax", "confident"):
            seeds[v.key] = confident_seeds(probs, v.alpha, ignore_index)
        elif v.kind == "confident+grow":
            assert ids is not None and v.beta is not None
            seeds[v.key] = grow_seeds(confident_seeds(probs, v.alpha, ignore_index), ids,
                                      probs, v.beta, ignore_index)
        elif v.kind in CLUSTER_KINDS:
            assert ids is not None
            present = tags if v.kind == "clusters-tags" else predicted
            beta = None if v.kind == "clusters-nogrow" else v.beta
            seeds[v.key] = cluster_seeds(probs, ids, present, v.alpha, beta, ignore_index)
        else:
            raise ValueError(f"unknown seed variant kind {v.kind!r}")
        secs[v.key] = t_forward + t_regions + time.perf_counter() - t
    counts = {tau: int(ids.max()) + 1 for tau, (ids, _) in regions.items()}
    return seeds, secs, counts


# --- scores ---------------------------------------------------------------------------------

@dataclass
class Tally:
    """Pooled counts of one variant: ``confusion[g, s]`` = valid pixels of ground truth g
    seeded s; ``valid[g]`` = valid pixels of ground truth g; per-image seconds and regions."""

    num_classes: int
    confusion: np.ndarray = field(init=False)
    valid: np.ndarray = field(init=False)
    seconds: list[float] = field(default_factory=list)
    regions: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.valid = np.zeros(self.num_classes, np.int64)

    def add(self, seeds: np.ndarray, gt: np.ndarray, ignore_index: int) -> None:
        c = self.num_classes
        g = np.asarray(gt).ravel().astype(np.int64)
        s = np.asarray(seeds).ravel().astype(np.int64)
        ok = g != ignore_index
        self.valid += np.bincount(g[ok], minlength=c)[:c]
        both = ok & (s != ignore_index)
        self.confusion += np.bincount(g[both] * c + s[both], minlength=c * c)[: c * c
                                                                             ].reshape(c, c)


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b > 0 else None


def score(tally: Tally, names: Sequence[str]) -> dict[str, Any]:
    """Precision, coverage and per-class figures of a tally (None where undefined)."""
    cm, valid = tally.confusion, tally.valid
    seeded = int(cm.sum())
    per_class = {}
    for k, name in enumerate(names):
        per_class[name] = {
            "precision": _ratio(cm[k, k], cm[:, k].sum()),
            "coverage": _ratio(cm[k].sum(), valid[k]),
            "recall": _ratio(cm[k, k], valid[k]),
            "seeded_pixels": int(cm[:, k].sum()), "gt_pixels": int(valid[k])}
    return {"precision": _ratio(np.trace(cm), seeded), "coverage": _ratio(seeded, valid.sum()),
            "seeded_pixels": seeded, "valid_pixels": int(valid.sum()), "per_class": per_class}


def score_seeds(seeds: np.ndarray, gt: np.ndarray, names: Sequence[str], ignore_index: int
                ) -> dict[str, Any]:
    """Pooled scores of (N, H, W) seeds against (N, H, W) ground truth."""
    tally = Tally(len(names))
    tally.add(seeds, gt, ignore_index)
    return score(tally, names)


@dataclass
class SeedRun:
    """One model's seeds over some images: (N, H, W) uint8 per variant key, and tallies."""

    seeds: dict[str, np.ndarray]
    tallies: dict[str, Tally]


def make_seeds(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
               variants: Sequence[Variant], num_classes: int, ignore_index: int,
               progress: bool = False) -> SeedRun:
    """Every variant's seeds on (N, 3, H, W) uint8 ``images``, scored against ``labels``."""
    model.eval()
    n, _, h, w = images.shape
    out = {v.key: np.full((n, h, w), ignore_index, np.uint8) for v in variants}
    tallies = {v.key: Tally(num_classes) for v in variants}
    for i in range(n):
        gt = labels[i].numpy()
        seeds, secs, counts = image_seeds(model, images[i], gt, variants, num_classes,
                                          ignore_index)
        for v in variants:
            out[v.key][i] = seeds[v.key]
            t = tallies[v.key]
            t.add(seeds[v.key], gt, ignore_index)
            t.seconds.append(secs[v.key])
            if v.tau is not None:
                t.regions.append(counts[v.tau])
        if progress:
            print(f"  seeds: {i + 1}/{n} images", end="\r", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return SeedRun(out, tallies)


def seed_rows(variants: Sequence[Variant], runs: dict[int, SeedRun], names: Sequence[str]
              ) -> list[dict[str, Any]]:
    """One row per variant: scores pooled over every seed's images, and per seed."""
    rows = []
    for v in variants:
        total = Tally(len(names))
        per_seed = []
        for s, run in runs.items():
            t = run.tallies[v.key]
            total.confusion += t.confusion
            total.valid += t.valid
            total.seconds += t.seconds
            total.regions += t.regions
            r = score(t, names)
            per_seed.append({"seed": s, "precision": r["precision"], "coverage": r["coverage"],
                             "images": len(t.seconds)})
        r = score(total, names)
        rows.append({"variant": v.name, **v.settings(), "precision": r["precision"],
                     "coverage": r["coverage"], "per_class": r["per_class"],
                     "seeded_pixels": r["seeded_pixels"], "valid_pixels": r["valid_pixels"],
                     "seconds_per_image": float(np.mean(total.seconds)) if total.seconds
                     else None,
                     "regions_per_image": float(np.mean(total.regions)) if total.regions
                     else None,
                     "images": len(total.seconds), "oracle": v.kind == "clusters-tags",
                     "per_seed": per_seed})
    return rows


# --- training on labels + seeds -------------------------------------------------------------

def seed_labels(pool: Pool, indices: Sequence[int], seeds: np.ndarray, ignore_index: int
                ) -> np.ndarray:
    """(len(pool), H, W) uint8 pool-aligned seeds: ``seeds[k]`` at pool image ``indices[k]``,
    ``ignore_index`` elsewhere."""
    out = np.full((len(pool), *pool.arrays.hw), ignore_index, np.uint8)
    out[np.asarray(indices, dtype=np.int64)] = seeds
    return out


def as_seeds(labels: np.ndarray, variant: str, ignore_index: int) -> Seeds:
    """Pool-aligned seed labels as the active-learning loop's pseudo-label round."""
    seeded = labels != ignore_index
    return Seeds(labels=ImageMaps.from_dense(labels, ignore_index), folder="benchmark",
                 method=variant, round=0,
                 fingerprint=hashlib.sha256(labels.tobytes()).hexdigest()[:12],
                 images=int(seeded.any(axis=(1, 2)).sum()), pixels=int(seeded.sum()))


def train_on_seeds(pool: Pool, state: LabelState, seeds: Seeds | None, cfg: Config, seed: int,
                   cache: Path, name: str) -> tuple[nn.Module, float, bool]:
    """``fit_round`` on ``training_labels`` (human where queried, seeds elsewhere), or its
    cached result ``cache/<name>-<digest>.safetensors``; the digest covers the merged labels
    and the training recipe. Returns the model, its training seconds and whether cached."""
    labels = training_labels(state.labels, state.queried, seeds)
    recipe = json.dumps({"train": cfg.train.model_dump(mode="json"), "seed": seed,
                         "level": cfg.active.level}, sort_keys=True)
    digest = hashlib.sha256(labels[:].tobytes() + recipe.encode()).hexdigest()[:12]
    path = cache / f"{name}-{digest}.safetensors"
    model = build_from_config(cfg.train, cfg.data.classes.num_classes)
    if path.is_file():
        meta = load_checkpoint(model, path)
        return model, float(meta["train_seconds"]), True
    model, secs = fit_round(pool, state, labels, cfg, seed, CPU, progress=False,
                            desc=f"training on labels + {name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, path, {"train_seconds": secs})
    return model, secs, False


def training_rows(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for name, per_seed in results.items():
        mious = [r["miou"] for r in per_seed]
        rows.append({"seeds": name, "miou": float(np.mean(mious)),
                     "miou_std": float(np.std(mious)) if len(mious) > 1 else None,
                     "per_seed": per_seed})
    return rows


# --- results --------------------------------------------------------------------------------

def write_results(data: dict[str, Any], out: Path) -> None:
    """``out`` (JSON) and its ``.png`` plot; refuses data that names machine paths."""
    found = machine_paths(data)
    if found:
        raise ValueError(f"results would name machine paths: {found[:3]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    plot(data, out.with_suffix(".png"))


def plot(data: dict[str, Any], path: Path) -> None:
    """Left: precision against coverage, one colour per variant (cluster kinds: a line over
    the taus, the trained tau ringed). Right: val mIoU per training variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 5.5), constrained_layout=True,
                                 gridspec_kw={"width_ratios": [3, 2]})
    tau = data["protocol"].get("train_tau")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in data["seeds"]:
        if r["precision"] is not None:
            groups.setdefault(r["variant"], []).append(r)
    markers = "osD^vxP*"
    for k, (name, rs) in enumerate(groups.items()):
        rs = sorted(rs, key=lambda r: r.get("tau") or 0.0)
        colour = f"C{k}"
        # a variant that tau does not change (no background: regions only act by growing)
        same = len(rs) > 1 and len({(round(r["coverage"], 4), round(r["precision"], 4))
                                    for r in rs}) == 1
        label = (name + (" (oracle tags)" if rs[0].get("oracle") else "")
                 + (" (same at every tau)" if same else ""))
        ax.plot([r["coverage"] for r in rs], [r["precision"] for r in rs],
                marker=markers[k % len(markers)], color=colour, markersize=8 - k % 3,
                ls="-" if len(rs) > 1 else "none", label=label,
                alpha=0.5 if rs[0].get("oracle") else 1.0)
        for r in rs:
            if r.get("tau") is not None and not same:
                text = f"tau {r['tau']:g}, {r['regions_per_image']:.0f} reg"
                ax.annotate(text, (r["coverage"], r["precision"]), fontsize=7,
                            textcoords="offset points", xytext=(4, -9), color=colour)
            if r.get("tau") == tau and r["variant"] in ("clusters", *TRAIN_VARIANTS):
                ax.scatter([r["coverage"]], [r["precision"]], s=220, facecolors="none",
                           edgecolors=colour)
    ax.set_xlabel("coverage (seeded share of valid pixels)")
    ax.set_ylabel("precision (seeds equal to ground truth)")
    ax.set_title(f"Seeds on the unlabelled pool ({data['protocol'].get('unlabelled_images')} "
                 "images per seed); ringed: the tau trained with")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    rows = data.get("training") or []
    if rows:
        xs = np.arange(len(rows))
        bx.bar(xs, [r["miou"] for r in rows], color=[f"C{k}" for k in range(len(rows))],
               alpha=0.8)
        for x, r in zip(xs, rows, strict=True):
            ys = [p["miou"] for p in r["per_seed"]]
            bx.scatter([x] * len(ys), ys, color="k", s=12, zorder=3)
            bx.annotate(f"{r['miou']:.3f}", (x, r["miou"]), ha="center", fontsize=8,
                        textcoords="offset points", xytext=(0, 3))
        bx.set_xticks(xs, [r["seeds"] for r in rows])
        ref = (data.get("reference") or {}).get("full_supervision_miou")
        if ref is not None:
            bx.axhline(ref, color="grey", ls="--", label=f"full supervision {ref:.3f}")
            bx.legend(fontsize=8, loc="lower right")
        bx.set_ylabel("val mIoU")
        bx.set_title(f"Trained on L's labels + U's seeds ({data['protocol'].get('steps')} "
                     "steps)")
        bx.grid(alpha=0.3, axis="y")
    else:
        bx.text(0.5, 0.5, "training skipped", ha="center", va="center")
        bx.set_axis_off()
    fig.suptitle("Seed quality on CamVid (model of the random chain at 10% of the images, "
                 "guard protocol)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- CamVid --------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(REPO.parent / "shared/datasets/camvid"))
    p.add_argument("--steps", type=int, default=2000, help="steps of every training run")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N unlabelled images (development)")
    p.add_argument("--skip-training", action="store_true", help="seed scores only")
    p.add_argument("--seeds", type=int, nargs="+", default=(0,),
                   help="chain seeds (cached al_camvid models exist for 0, 1, 2)")
    p.add_argument("--taus", type=float, nargs="+", default=TAUS,
                   help="clustering thresholds scored")
    p.add_argument("--tau", type=float, default=TAU, help="the threshold trained with")
    p.add_argument("--train", nargs="*", default=TRAIN_VARIANTS,
                   help="training variants: none, argmax, confident-A, clusters, "
                   "clusters-nogrow, confident-0.9+grow (the region ones at --tau)")
    p.add_argument("--guard-frames", type=int, default=300)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: OMP_NUM_THREADS, else every core)")
    p.add_argument("--out", default=str(HERE / "results" / "seeds_camvid.json"))
    p.add_argument("--plot-only", action="store_true", help="redraw the plot from the JSON")
    return p.parse_args(argv)


def _replay(al: Any, al_args: argparse.Namespace, pool: Pool, seed: int
            ) -> tuple[Config, LabelState]:
    """The random chain's labelled set after round :data:`ROUND` (no model needed: random
    selection scans none)."""
    from segloop.active.fit import initial_choice, select_round

    cfg = al.recipe_config(al_args, "image", "random", seed)
    budgets = al.IMAGE_BUDGETS
    state = LabelState.empty(pool, al.IGNORE)
    choice = initial_choice(pool, state, cfg, al.budget_for("image", budgets[0], pool, state))
    al._label(pool, state, choice.selection, "exact")
    for k in range(1, ROUND + 1):
        choice, _, _ = select_round(None, pool, state, cfg,  # type: ignore[arg-type]
                                    al.budget_for("image", budgets[k], pool, state), k, CPU,
                                    progress=False)
        al._label(pool, state, choice.selection, "exact")
    return cfg, state


def _recorded(seed: int, guard: int) -> dict[str, Any] | None:
    """The chain's own record of this point in ``results/al_camvid_guard.json``, if any."""
    path = HERE / "results" / ("al_camvid_guard.json" if guard else "al_camvid.json")
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    for p in data.get("points", []):
        if (p.get("level"), p.get("strategy"), p.get("seed"), p.get("budget_fraction")) == (
                "image", "random", seed, 0.1):
            return {"miou": p.get("miou"), "image_fraction": p.get("image_fraction"),
                    "images_by_sequence": p.get("images_by_sequence"),
                    "full_miou": data.get("full_miou")}
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if args.plot_only:
        plot(json.loads(out.read_text()), out.with_suffix(".png"))
        return 0
    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    import al_camvid as al

    from segloop.data.classes import CAMVID
    from segloop.data.datasets import CamVidLayout
    from segloop.train.arrays import SplitArrays, stack_split

    names, ignore, c = CAMVID.names, CAMVID.ignore_index, CAMVID.num_classes
    variants = default_variants(sorted(set(args.taus) | {args.tau}))
    trainable = {"none"} | {v.name for v in variants if v.kind != "clusters-tags"}
    unknown = [t for t in args.train if t not in trainable]
    if unknown:
        raise SystemExit(f"--train: unknown variants {unknown}; choose from "
                         f"{', '.join(sorted(trainable))}")
    start = time.perf_counter()
    al_args = al.parse_args(["--guard-frames", str(args.guard_frames), "--root", args.root])
    arrays = stack_split(CamVidLayout(args.root, "train", CAMVID), tuple(al_args.size),
                         desc="pool")
    ev = stack_split(CamVidLayout(args.root, "val", CAMVID), tuple(al_args.size), desc="eval")
    if args.guard_frames:
        drop = al.near_eval(list(arrays.names), ev.names, args.guard_frames)
        keep = [i for i in range(len(arrays.names)) if i not in drop]
        assert arrays.labels is not None
        arrays = SplitArrays(arrays.images[keep], arrays.labels[keep],
                             tuple(arrays.image_ids[i] for i in keep),
                             tuple(arrays.names[i] for i in keep),
                             tuple(arrays.original_hw[i] for i in keep))
    assert arrays.labels is not None
    pool = Pool(arrays, (), None, None)
    runs: dict[int, SeedRun] = {}
    trained: dict[str, list[dict[str, Any]]] = {}
    checks: list[dict[str, Any]] = []
    labelled_count = unlabelled_count = 0
    checkpoints: list[str] = []
    for seed in args.seeds:
        cfg, state = _replay(al, al_args, pool, seed)
        labelled = [int(i) for i in np.flatnonzero(state.image_queried())]
        unlabelled = [i for i in range(len(pool)) if i not in set(labelled)][: args.limit]
        labelled_count, unlabelled_count = len(labelled), len(unlabelled)
        seqs = dict(sorted(Counter(arrays.names[i].split("_")[0] for i in labelled).items()))
        rec = _recorded(seed, args.guard_frames)
        checks.append({"seed": seed, "labelled_images": len(labelled),
                       "images_by_sequence": seqs,
                       "recorded_images_by_sequence": rec and rec["images_by_sequence"],
                       "matches_record": None if rec is None else (
                           rec["images_by_sequence"] == seqs
                           and abs(rec["image_fraction"] - len(labelled) / len(pool)) < 1e-9)})
        key = al._model_key(al_args, cfg, "image", "random", seed, ROUND)
        checkpoints.append(f"benchmarks/.cache/al_camvid/{key}.safetensors")  # repo-relative
        model, secs = al.trained(cfg, pool, state, key, seed * 1000 + ROUND, None)
        print(f"seed {seed}: {len(labelled)} labelled images ({seqs}), "
              f"{len(unlabelled)} unlabelled; model {key}", flush=True)
        run = make_seeds(model, arrays.images[unlabelled], arrays.labels[unlabelled], variants,
                         c, ignore, progress=True)
        runs[seed] = run
        for v in variants:
            if v.tau is None or v.tau == args.tau:
                r = score(run.tallies[v.key], names)
                regions = run.tallies[v.key].regions
                print(f"  {v.key}: precision {r['precision']:.3f} coverage "
                      f"{r['coverage']:.3f}" + (f" regions {np.mean(regions):.1f}"
                                                  if regions else ""))
        if args.skip_training:
            continue
        tcfg = cfg.model_copy(update={"train": cfg.train.model_copy(
            update={"steps": args.steps})})
        cache = CACHE / f"{al_args.model}-{args.steps}-seed{seed}{al._guard(al_args)}"
        for name in args.train:
            if name == "none" and args.steps == al_args.steps:
                m, s, cached, what = model, secs, True, "the chain's round-2 model"
            else:
                seeds = None
                if name != "none":
                    vkey = (f"{name} tau={args.tau:g}"
                            if name in CLUSTER_KINDS or name.endswith("+grow") else name)
                    seeds = as_seeds(seed_labels(pool, unlabelled, run.seeds[vkey], ignore),
                                     name, ignore)
                m, s, cached = train_on_seeds(pool, state, seeds, tcfg, seed * 1000 + ROUND,
                                              cache, name)
                what = "cached" if cached else "trained"
            r = al.miou(m, ev)
            print(f"  train {name}: mIoU {r['miou']:.4f} ({what}, {s:.0f} s)", flush=True)
            trained.setdefault(name, []).append({"seed": seed, "miou": r["miou"],
                                                 "iou": r["iou"], "train_seconds": s,
                                                 "model": what})
    rec0 = _recorded(args.seeds[0], args.guard_frames)
    rows = seed_rows(variants, runs, names)
    data = {
        "protocol": protocol(args, {
            "size": list(al_args.size), "model": al_args.model, "pool_images": len(pool),
            "labelled_images": labelled_count, "unlabelled_images": unlabelled_count,
            "budgets": list(al.IMAGE_BUDGETS), "replay_check": checks,
            "seed_models": checkpoints, "seed_model_steps": al_args.steps,
            "ignore_index": ignore, "threads": threads}),
        "seeds": rows,
        "training": training_rows(trained),
        "reference": {"chain_miou_at_10pct": rec0 and rec0["miou"],
                      "full_supervision_miou": rec0 and rec0["full_miou"],
                      "source": "results/al_camvid_guard.json: the chain's point (seed "
                                f"{args.seeds[0]}) and full supervision (mean over seeds), "
                                "same steps and evaluation"},
        "notes": notes(args, rows),
    }
    write_results(data, out)
    print(f"{time.perf_counter() - start:.0f} s; wrote {out.name} and "
          f"{out.with_suffix('.png').name}")
    return 0


def protocol(args: argparse.Namespace, facts: dict[str, Any]) -> dict[str, Any]:
    """What decides the numbers (no machine paths); ``facts``: those the run found (sizes,
    counts, the replay check, repo-relative checkpoints)."""
    budgets = facts.pop("budgets", None)
    return {
        "dataset": "CamVid", "pool": f"train minus the frames within {args.guard_frames} "
        "frames of val's clip", "evaluation": "val", "guard_frames": args.guard_frames,
        "limit": args.limit, "seeds": list(args.seeds),
        "labelled_set": f"al_camvid image/random chain at 10% of the images (round {ROUND} "
                        f"of {budgets}), replayed with its config and seed",
        "features": "LR-ASPP backbone low (40 ch, 12x16) + high (960 ch, 6x8 upsampled), "
                    "each unit-norm, concatenated",
        "present_classes": "clusters, clusters-nogrow: classes M predicts in the image; "
                           "clusters-tags: ground-truth classes (oracle)",
        "alpha": ALPHA, "beta": BETA, "taus": sorted(set(args.taus) | {args.tau}),
        "train_tau": args.tau, "confident_alphas": list(CONFIDENT_ALPHAS),
        "grow_alphas": list(GROW_ALPHAS),
        "scores": "pooled over all pixels of U; ground-truth void excluded",
        "steps": args.steps, "skip_training": args.skip_training,
        "training": "fit_round on training_labels(human, queried, Seeds(seeds)) with the "
                    f"chain's recipe at --steps; seed 1000 * seed + {ROUND}",
        **facts,
    }


def machine_paths(obj: Any) -> list[str]:
    """Strings in ``obj`` (nested dicts / lists) that name a place on this machine: absolute
    paths, home-relative ones, or anything holding the repository's location."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in machine_paths(k) + machine_paths(v)]
    if isinstance(obj, list | tuple):
        return [p for v in obj for p in machine_paths(v)]
    if isinstance(obj, str) and (obj.startswith(("/", "~")) or str(REPO) in obj
                                 or str(Path.home()) in obj):
        return [obj]
    return []


def notes(args: argparse.Namespace, rows: Sequence[dict[str, Any]]) -> list[str]:
    out = [
        "Seeds come from the active-learning model's own softmax (no SAM / SD weights here): "
        "they can only reach pixels that model already gets right, so this measures how "
        "well each rule filters that model's mistakes, not a new source of information.",
        "clusters: thesis 002's rule with M's softmax as the class maps. Normalising each "
        "present class to [0, 1] lifts a class M is unsure of to 1 at its own peak, so "
        "alpha 0.5 on normalised maps is a much lower bar than 0.5 on the softmax.",
        "Without a background class, seeds_from_maps uses no region (the region rule "
        "only picks the background superpixel): regions act only through growing, so "
        "clusters-nogrow is the same at every tau.",
        "confident-0.9+grow: confident-0.9's seeds grown over the feature clusters with "
        "grow_seeds (beta 0.7, M's softmax): growing from sparse, precise seeds.",
        "clusters grows with M's softmax once, before training (the thesis grows with the "
        "segmenter's softmax during training); grown pixels keep every seed (a seed never "
        "changes), so its coverage is at least clusters-nogrow's.",
        "clusters-tags uses the ground-truth classes of each image as its present classes "
        "(the thesis's image-level labels): an oracle, not available in active learning.",
        "Training draws batches in proportion to labelled pixels (the chain's recipe), so "
        "seeded images take most of the batches; seeds are never counted as labelled.",
    ]
    grown = {(r["variant"], r.get("tau")): r["coverage"] for r in rows
             if r["variant"] in ("clusters", "clusters-nogrow") and r["coverage"] is not None}
    if ("clusters", args.tau) in grown and ("clusters-nogrow", args.tau) in grown:
        out.append(f"At tau {args.tau:g} growing added "
                   f"{grown[('clusters', args.tau)] - grown[('clusters-nogrow', args.tau)]:.2%}"
                   " of the valid pixels to the thesis seeds.")
    if args.limit:
        out.append(f"--limit {args.limit}: only the first {args.limit} unlabelled images are "
                   "seeded (and trained with): development figures, not the benchmark.")
    return out


if __name__ == "__main__":
    sys.exit(main())
