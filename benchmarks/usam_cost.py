"""CPU time and memory of U-SAM pseudo-labelling at the paper's scale (a benchmark, not a test).

Protocol (fixed):

- Inputs, written once to ``benchmarks/.cache/usam_cost/`` by ``ShardWriter`` (32 images a
  shard) and the fakes of ``tests/pseudolabel/conftest.py``: ``--images`` training images
  (4000 = 20 classes x 200, as U-SAM) + manifest, d = 100 float16 1024-d embeddings (5 object
  masks = class mean + noise, 95 = shared background + noise), 16x16 masks (never read);
  ``--label-images`` targets (64 = one ``chunk_size``) at 500x375 and 480x360, 40 ellipses /
  rectangles (0.2-30% of the image) + 60 shifted, rescaled copies (as grid points give).
- Training (MLP 512 x 4 layers, batch 64, lr 1e-3; 1 epoch per measurement, a fresh head;
  one untimed warm-up epoch per feed), ``--rounds`` interleaved rounds of: a teacher epoch
  fed by ``stream_bags`` (shuffle_buffer 1024), one fed by the in-memory baseline (every bag
  read once into an (N, d, 1024) float16 tensor, load timed apart, shuffled by index),
  ``median_entropy`` over the stream, a streamed student epoch, the stream alone (no model).
- Peak RSS of one teacher epoch, each in its own child process (VmHWM; ``ru_maxrss``, also
  stored, starts at the parent's peak): streamed with shuffle_buffer 256 and 1024, in memory
  (load + epoch); ``before_mb``: after imports. Bound: bags held (buffer or N x d x 1024 x 2
  bytes) + a record batch (``bags.py``) + mini-batch (fp16, fp32, activations) + model, Adam.
- Labelling, s / image: ``read_embeddings`` of the chunk (tokens + RLE), RLE decode,
  ``predict`` (untrained head: same cost), ``decide`` (conf 0.5, NMS 0.7) on made-up scores
  that 30% of the masks pass (an untrained head passes none), ``paint``; then ``label_chunk``
  as the flow runs it (same scores, + mask rows, label PNGs, Parquet part).
- Extrapolation (computed from the medians, not measured): 20 teacher epochs + median + 20
  student epochs + ``label_chunk`` on 1449 VOC val images; SAM embedding is not included.

Writes ``benchmarks/results/usam_cost.json`` and ``usam_cost.png``.

    python benchmarks/usam_cost.py             # ~6 min on 2 cores (3 rounds)
    python benchmarks/usam_cost.py --quick     # 400 images, 1 round: checks the script only
    python benchmarks/usam_cost.py --table
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from segloop.pseudolabel.bags import _bags_of_file, stream_bags, training_set
from segloop.pseudolabel.usam import USamSettings, median_entropy, train_student, train_teacher

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = HERE / ".cache" / "usam_cost"
D, DIM, CLASSES, SHARD, EPOCHS, VOC_VAL, PASS = 100, 1024, 20, 32, 20, 1449, 0.3
SIZES = {"voc": (375, 500), "camvid": (360, 480)}  # (H, W)
SETTINGS = USamSettings(hidden=512, layers=4, batch_size=64, lr=1e-3, epochs=1)
_teacher = partial(train_teacher, num_classes=CLASSES, settings=SETTINGS, progress=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=4000, help="training images")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    p.add_argument("--label-images", type=int, default=64, help="target images per size")
    p.add_argument("--quick", action="store_true", help="400 images, 1 round, separate JSON")
    p.add_argument("--table", action="store_true", help="print the README table and exit")
    p.add_argument("--child", choices=["stream", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--buffer", type=int, default=1024, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _target_masks(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.ogrid[:h, :w]  # 40 shapes (ellipse?, y, x, log area, aspect) + 60 copies
    p = rng.uniform([0, 0, 0, np.log(0.002), 0.5], [1, h, w, np.log(0.3), 2.0], (40, 5))
    p = np.concatenate([p, p[rng.integers(0, 40, D - 40)]])
    s = np.sqrt(h * w * np.exp(p[:, 3])) * np.r_[np.ones(40), rng.uniform(0.85, 1.15, D - 40)]
    p[40:, 1:3] += rng.normal(0, 0.08, (D - 40, 2)) * s[40:, None]
    masks = np.zeros((D, h, w), bool)
    for j, (e, y, x, _, a) in enumerate(p):
        dy, dx = np.abs(yy - y) / (s[j] / np.sqrt(a) / 2), np.abs(xx - x) / (s[j] * np.sqrt(a) / 2)
        masks[j] = dy**2 + dx**2 <= 1 if e < 0.5 else (dy <= 1) & (dx <= 1)
    return masks


def _inputs(folder: Path, n: int, hw: tuple[int, int] | None) -> Path:
    """Training images with a manifest (``hw`` None), or targets of size ``hw``; once."""
    marker, meta = folder / "meta.json", {"images": n, "hw": hw, "d": D, "version": 1}
    if marker.is_file() and json.loads(marker.read_text()) == meta:
        return folder
    from segloop.embed.store import ShardWriter
    from segloop.embed.tables import EmbeddedImage
    from tests.pseudolabel.conftest import image_masks, write_manifest

    shutil.rmtree(folder, ignore_errors=True)
    print(f"[usam_cost] writing {folder} ...", flush=True)
    rng = np.random.default_rng(0 if hw is None else 1)
    means = rng.standard_normal((CLASSES + 1, DIM), dtype=np.float32)  # the last: background
    tiny = rng.random((D, 16, 16)) < 0.3
    for shard, start in enumerate(range(0, n, SHARD)):
        with ShardWriter(str(folder / "embed"), "synthetic" if hw is None else "real",
                         shard) as writer:
            for i in range(start, min(n, start + SHARD)):
                idx = np.full(D, CLASSES)  # 5 "object" masks: their class's mean + noise
                idx[rng.choice(D, 5, replace=False)] = i * CLASSES // n
                tokens = means[idx] + 0.7 * rng.standard_normal((D, DIM), dtype=np.float32)
                masks = tiny if hw is None else _target_masks(rng, *hw)
                writer.add(EmbeddedImage(f"img{i:05d}", f"img{i:05d}.png",
                                         image_masks(tokens, masks), masks.shape[1:]))
    if hw is None:
        write_manifest(folder / "manifest" / "manifest.parquet",
                       {f"img{i:05d}": [f"class{i * CLASSES // n:02d}"] for i in range(n)},
                       [f"class{c:02d}" for c in range(CLASSES)])
    marker.write_text(json.dumps(meta))
    return folder


def _feeds(folder: Path, buffer: int, memory: bool) -> tuple[Callable[[int], Iterator], float]:
    """(batches(epoch), set-up seconds) of ``stream_bags`` or of the in-memory baseline."""
    t0 = time.perf_counter()
    ts = training_set(str(folder / "embed"), str(folder / "manifest"))
    if not memory:
        return (lambda e: stream_bags(ts, e, seed=0, batch_size=64, shuffle_buffer=buffer),
                time.perf_counter() - t0)
    bags, i = np.empty((ts.images, D, DIM), np.float16), 0
    targets = np.empty((ts.images, len(ts.labels)), np.float32)
    for url in ts.files:
        for image, bag in _bags_of_file(url, ts.targets):
            bags[i], targets[i], i = bag, ts.targets[image], i + 1
    assert i == ts.images
    x, y = torch.from_numpy(bags), torch.from_numpy(targets)

    def epoch(e: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(e))
        for s in range(0, len(x), 64):
            yield x[order[s : s + 64]], y[order[s : s + 64]]
    return epoch, time.perf_counter() - t0


def _timed(f: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def _child(kind: str, buffer: int, folder: Path, n: int) -> dict[str, Any]:
    def hwm() -> float:  # VmHWM: this process's own peak (ru_maxrss keeps the parent's)
        return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024

    before = hwm()
    seconds, _ = _timed(partial(_teacher, _feeds(folder, buffer, kind == "memory")[0]))
    s, mb = SETTINGS, 2**20
    params = DIM * s.hidden + (s.layers - 2) * s.hidden**2 + s.hidden * CLASSES
    bound = {"bags": (n if kind == "memory" else min(n, buffer)) * D * DIM * 2 / mb,
             "record_batch": 2048 * DIM * 2 / mb,
             "mini_batch": s.batch_size * D * (DIM * 6 + s.hidden * 8 * (s.layers - 1)) / mb,
             "model_adam": params * 4 * 4 / mb}
    bound["total"] = sum(bound.values())
    return {"kind": kind, "buffer": buffer if kind == "stream" else None, "before_mb": before,
            "peak_rss_mb": hwm(), "epoch_seconds": seconds, "bound_mb": bound,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run_child(kind: str, buffer: int, images: int) -> dict[str, Any]:
    print(f"[usam_cost] peak RSS: {kind} (buffer {buffer}) in a child ...", flush=True)
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--buffer", str(buffer),
                           "--images", str(images)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {kind} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def measure_training(folder: Path, rounds: int) -> dict[str, Any]:
    stream, join_s = _feeds(folder, 1024, memory=False)
    memory, load_s = _feeds(folder, 1024, memory=True)
    _teacher(stream), _teacher(memory)
    keys = ("teacher_stream", "teacher_memory", "median_entropy", "student_stream", "stream_only")
    reps: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        print(f"[usam_cost] round {r + 1}/{rounds}", flush=True)
        (a, (teacher, _)), (b, _) = (_timed(partial(_teacher, stream)),
                                     _timed(partial(_teacher, memory)))
        c, tau = _timed(partial(median_entropy, teacher, stream(0)))
        d, _ = _timed(partial(train_student, stream, teacher, tau, CLASSES, SETTINGS,
                              progress=False))
        e, _ = _timed(partial(deque, stream(r), 0))  # the stream alone: no model
        for k, v in zip(keys, (a, b, c, d, e), strict=True):
            reps[k].append(v)
    ratios = [a / b for a, b in zip(reps["teacher_stream"], reps["teacher_memory"], strict=True)]
    return {"seconds": {k: round(statistics.median(v), 2) for k, v in reps.items()},
            "rounds": reps, "stream_over_memory": round(statistics.median(ratios), 3),
            "stream_over_memory_per_round": ratios, "training_set_seconds": join_s,
            "memory_load_seconds": load_s}


def measure_labelling(folder: Path, n: int, rounds: int) -> dict[str, Any]:
    from segloop.config import parse_config
    from segloop.embed.store import Embeddings, read_embeddings
    from segloop.pseudolabel.mask_label import USamScorer, label_chunk
    from segloop.pseudolabel.paint import decide, paint
    from segloop.pseudolabel.usam import build_head, predict

    torch.manual_seed(0)
    head, rng = build_head(CLASSES, SETTINGS).eval(), np.random.default_rng(2)
    ids, target, class_ids = [f"img{i:05d}" for i in range(n)], str(folder / "embed"), \
        np.arange(1, CLASSES + 1)
    logits = rng.standard_normal((n, D, CLASSES))
    passing = rng.random((n, D)) < PASS  # these masks get one confident class
    logits[passing, rng.integers(0, CLASSES, passing.sum())] += 6.0
    scores = torch.softmax(torch.from_numpy(logits), -1).float().numpy()

    class Scorer(USamScorer):  # the head's real predict (once per chunk), made-up scores
        def __call__(self, emb: Embeddings, i: int, masks: np.ndarray) -> np.ndarray:
            super().__call__(emb, i, masks)
            return scores[ids.index(emb.image_ids[i])]

    mapping = SimpleNamespace(labels=tuple(f"class{c:02d}" for c in range(CLASSES)),
                              class_ids=class_ids, fill=0)
    phases = ("read", "decode", "predict", "decide", "paint", "label_chunk")
    reps: dict[str, list[float]] = {k: [] for k in phases}
    for _ in range(rounds):
        t, passed, kept = dict.fromkeys(phases, 0.0), 0, 0
        t["read"], emb = _timed(partial(read_embeddings, target, ids))
        t["predict"], _ = _timed(partial(predict, head, emb.tokens))
        for i in range(n):
            dt, masks = _timed(partial(emb.masks, i))
            dt2, dec = _timed(partial(decide, scores[i], masks, 0.5, 0.7))
            keep = np.flatnonzero(dec.kept)
            dt3, _ = _timed(partial(paint, masks[keep], class_ids[dec.class_index[keep]],
                                    dec.confidence[keep], 0))
            t["decode"], t["decide"], t["paint"] = (t["decode"] + dt, t["decide"] + dt2,
                                                    t["paint"] + dt3)
            passed, kept = passed + int((dec.confidence >= 0.5).sum()), kept + len(keep)
        with tempfile.TemporaryDirectory() as tmp:
            plan = SimpleNamespace(chunks=[ids], method="usam", round=1, mapping=mapping,
                                   paths=SimpleNamespace(target=target, staging=Path(tmp)))
            t["label_chunk"], _ = _timed(partial(label_chunk, parse_config({}), plan, 0,
                                                 Scorer(head), progress=False))
        for k in phases:
            reps[k].append(t[k] / n)
    return {"seconds_per_image": {k: round(statistics.median(v), 4) for k, v in reps.items()},
            "rounds": reps, "passing_share": passed / (n * D), "kept_share": kept / (n * D)}


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, rss = data["training"]["seconds"], data["peak_rss"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4), width_ratios=[5, 3])
    rss_mb = {k: v["peak_rss_mb"] for k, v in rss.items()}
    for a, bars, fmt, colours in ((ax, s, "{:.1f}", "#dd8452 #4c72b0 #999999 #f4a582 #c7c7c7"),
                                  (bx, rss_mb, "{:.0f}", "#f4a582 #dd8452 #4c72b0")):
        a.bar([k.replace("_", "\n") for k in bars], list(bars.values()), color=colours.split())
        for i, v in enumerate(bars.values()):
            a.text(i, v, fmt.format(v), ha="center", va="bottom", fontsize=9)
        a.set_ylim(0, 1.2 * max(bars.values()))
    for i, v in enumerate(rss.values()):
        bx.hlines(v["before_mb"] + v["bound_mb"]["total"], i - 0.4, i + 0.4, colors="k",
                  linestyles="--", label="before the epoch + bound" if i == 0 else None)
    ax.set(title=f"{data['protocol']['images']} images x d={D}, MLP 512x4, batch 64, 2 CPU cores",
           ylabel="seconds per epoch / pass (lower is better)")
    bx.set(title="one teacher epoch, own process", ylabel="peak RSS (MB)")
    bx.legend(fontsize=8, loc="upper left")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def markdown_table(data: dict[str, Any]) -> str:
    tr, s, ex = data["training"], data["training"]["seconds"], data["extrapolation"]
    rows = [(f"teacher epoch, streamed (buffer 1024), {data['protocol']['images']} images",
             f"{s['teacher_stream']:.1f} s", f"x{EPOCHS}: {ex['seconds']['teacher'] / 60:.1f} min"),
            (f"teacher epoch, in memory (+{tr['memory_load_seconds']:.0f} s loading, once)",
             f"{s['teacher_memory']:.1f} s (streamed: {tr['stream_over_memory']:.2f}x)", ""),
            ("the stream alone, one epoch (no model)", f"{s['stream_only']:.1f} s", ""),
            ("median teacher entropy, one pass", f"{s['median_entropy']:.1f} s",
             f"{ex['seconds']['median_entropy']:.0f} s"),
            ("student epoch, streamed", f"{s['student_stream']:.1f} s",
             f"x{EPOCHS}: {ex['seconds']['student'] / 60:.1f} min")]
    for size, label in (("voc", "VOC 500x375"), ("camvid", "CamVid 480x360")):
        p = data["labelling"][size]["seconds_per_image"]
        ms = " + ".join(f"{k} {p[k] * 1000:.0f}" for k in ("read", "decode", "predict",
                                                            "decide", "paint"))
        rows.append((f"labelling {label}, per image (ms: {ms})", f"{p['label_chunk']:.3f} s",
                     f"x{VOC_VAL}: {ex['seconds']['labelling'] / 60:.1f} min"
                     if size == "voc" else ""))
    rows += [("**U-SAM step, extrapolated**", "", f"**{ex['total_minutes']:.0f} min**")]
    rss = ", ".join(f"{k.replace('_', ' ')} {v['peak_rss_mb']:.0f} MB (before it "
                    f"{v['before_mb']:.0f}, bound +{v['bound_mb']['total']:.0f})"
                    for k, v in data["peak_rss"].items())
    return "\n".join(["| step | measured | default config |", "|---|---:|---:|"]
                     + [f"| {a} | {b} | {c} |" for a, b, c in rows]
                     + ["", f"Peak RSS of one teacher epoch: {rss}"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.images, args.rounds, args.label_images = 400, 1, 8
    n, train_dir = args.images, CACHE / f"train_{args.images}"
    if args.child:
        print(json.dumps(_child(args.child, args.buffer, train_dir, n)))
        return 0
    path = RESULTS / ("usam_cost_quick.json" if args.quick else "usam_cost.json")
    if args.table:
        print(markdown_table(json.loads(path.read_text())))
        return 0
    start = time.perf_counter()
    _inputs(train_dir, n, None)
    targets = {k: _inputs(CACHE / f"{k}_{args.label_images}", args.label_images, hw)
               for k, hw in SIZES.items()}
    data: dict[str, Any] = {"protocol": {
        "text": __doc__.split("Protocol (fixed):")[1].split("Writes ``")[0].strip(),
        "images": n, "d": D, "classes": CLASSES, "settings": SETTINGS.__dict__,
        "rounds": args.rounds, "label_images": args.label_images, "quick": args.quick,
        "torch_threads": torch.get_num_threads()}}
    data["parquet_mb"] = {k: sum(p.stat().st_size for p in v.rglob("*.parquet")) / 2**20
                          for k, v in {"training": train_dir, **targets}.items()}
    data["peak_rss"] = {f"stream_{b}": _run_child("stream", b, n) for b in (256, 1024)}
    data["peak_rss"]["in_memory"] = _run_child("memory", 1024, n)
    data["training"] = measure_training(train_dir, args.rounds)
    data["labelling"] = {k: measure_labelling(v, args.label_images, args.rounds)
                         for k, v in targets.items()}
    s, lab = data["training"]["seconds"], data["labelling"]["voc"]["seconds_per_image"]
    parts = {"teacher": EPOCHS * s["teacher_stream"], "median_entropy": s["median_entropy"],
             "student": EPOCHS * s["student_stream"], "labelling": VOC_VAL * lab["label_chunk"]}
    data["extrapolation"] = {"total_minutes": sum(parts.values()) / 60, "seconds": parts,
                             "note": "extrapolated from the medians, not measured: teacher "
                             "and student epochs x 20 + median + label_chunk x 1449 VOC val"}
    data["wall_minutes"] = round((time.perf_counter() - start) / 60, 1)
    data = json.loads(json.dumps(data), parse_float=lambda x: round(float(x), 4))
    path.with_suffix(".tmp").write_text(json.dumps(data, indent=2) + "\n")
    path.with_suffix(".tmp").replace(path)
    plot(data, path.with_suffix(".png"))
    print(markdown_table(data))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))  # tests/ (the fakes) when run from anywhere
    sys.exit(main())
