"""Part 2 of ``benchmarks/scale.py``: the thread runner against 1 and 2 local Dask workers.

In one run, through the real flows and ``runner`` settings: the active-learning flow (one
round: training, evaluation and pool scoring by shard as mapped tasks) on the generated
pool, and the embed flow with a tiny random SAM on some of its images. Outputs must be
identical across runners (the rounds' units and label files, every shard's scan, the SAM
tokens); the scheduling overhead per task is measured with tasks that do nothing. This
process runs torch on one thread, as Dask workers do (their nanny sets OMP_NUM_THREADS=1),
so every runner computes the same floats. On 2 cores a speed-up is not expected.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

from prefect import flow, task

RUNNERS: dict[str, dict[str, Any]] = {
    "threads": {"kind": "threads", "max_workers": 2},
    "dask-1": {"kind": "dask", "n_workers": 1},
    "dask-2": {"kind": "dask", "n_workers": 2},
}
NOOP_TASKS = 40
SEQUENTIAL_TASKS = 10


@task(name="noop")
def noop(i: int) -> int:
    return i


@flow(name="runner-overhead")
def overhead_flow(runner: dict[str, Any]) -> dict[str, float]:
    """Seconds to start the runner; ms per no-op task submitted one at a time (submit to
    result) and ``NOOP_TASKS`` at once (wall / tasks)."""
    from segloop.config import parse_config
    from segloop.flows.task_runner import task_runner

    cfg = parse_config({"runner": runner}).runner
    t0 = time.perf_counter()
    with task_runner(cfg) as run:
        run.submit(noop, i=-1).result()  # the runner (and a Dask cluster) is up
        started = time.perf_counter() - t0
        t1 = time.perf_counter()
        for i in range(SEQUENTIAL_TASKS):
            assert run.submit(noop, i=i).result() == i
        one = (time.perf_counter() - t1) / SEQUENTIAL_TASKS
        t2 = time.perf_counter()
        futures = [run.submit(noop, i=i) for i in range(NOOP_TASKS)]
        assert [f.result() for f in futures] == list(range(NOOP_TASKS))
        batch = (time.perf_counter() - t2) / NOOP_TASKS
    return {"start_s": started, "ms_per_task_one_at_a_time": 1000 * one,
            "ms_per_task_in_a_batch": 1000 * batch}


def _al_outputs(ws: Path) -> dict[str, Any]:
    """What must not depend on the runner: round units, label bytes, shard scans."""
    from segloop.active.scan_files import load_scan
    from segloop.data.parquet import read_table
    from segloop.data.schemas import LABEL_ROUND

    rounds = []
    for folder in sorted(p for p in (ws / "data/labels").glob("round_*") if p.is_dir()):
        table = read_table(str(folder / "round.parquet"), LABEL_ROUND,
                           columns=["image_id", "region_id"])
        labels = hashlib.sha256(b"".join(p.read_bytes() for p in
                                         sorted((folder / "labels").iterdir()))).hexdigest()
        rounds.append((sorted(table.column("image_id").to_pylist()), labels))
    scans = []
    for path in sorted((ws / "work").rglob("shard_*.npz")):
        scan = load_scan(path)
        digest = hashlib.sha256(repr([(u.image_index, u.score, u.pred_class)
                                      for u in scan.units]).encode())
        for t in (scan.features, scan.class_fractions):
            if t is not None:
                digest.update(t.contiguous().numpy().tobytes())
        scans.append((path.name, digest.hexdigest()))
    return {"rounds": rounds, "scans": scans}


def _al_config(root: Path, work: Path, args: Any, runner: dict[str, Any],
               shard_images: int) -> Any:
    from segloop.config import parse_config

    return parse_config({
        "base": {"seed": args.seed, "device": "cpu",
                 "paths": {"workspace": str(work / "ws"), "dvc_remote": str(work / "remote"),
                           "reports": str(work / "reports")}},
        "data": {"format": "camvid", "root": str(root), "split": "train", "classes": "camvid"},
        "train": {"steps": args.steps},
        "active": {"pool_split": "train", "eval_split": "train", "eval_limit": 100,
                   "image_size": [96, 128], "level": "image", "rounds": 1,
                   "compare_random": False},
        "runner": {**runner, "score_shard_images": shard_images},
    })


def _embed_config(root: Path, work: Path, runner: dict[str, Any], images: int) -> Any:
    from segloop.config import parse_config

    return parse_config({
        "base": {"device": "cpu",
                 "paths": {"workspace": str(work / "ws"), "dvc_remote": str(work / "remote"),
                           "reports": str(work / "reports")}},
        "data": {"format": "camvid", "root": str(root), "split": "train", "classes": "camvid"},
        "models": {"sam": {"variant": "tiny"}},
        "embed": {"limit": images, "shard_size": max(1, images // 4), "concurrent_shards": 4},
        "runner": runner,
    })


def measure_dask(args: Any, root: Path, pool_images: int, embed_images: int = 16
                 ) -> dict[str, Any]:
    """Run the three runners in turn (the caller started the Prefect server)."""
    import torch

    from segloop.embed import store
    from segloop.flows.active_learning import active_learning_flow
    from segloop.flows.embed import embed_flow

    torch.set_num_threads(1)
    work = Path(args.cache) / "dask"
    shutil.rmtree(work, ignore_errors=True)
    shard_images = max(1, -(-pool_images // 4))  # 4 shards
    out: dict[str, Any] = {"pool_images": pool_images, "score_shards": 4,
                           "score_shard_images": shard_images, "embed_images": embed_images,
                           "embed_shards": 4, "noop_tasks": NOOP_TASKS, "runners": {}}
    al_outputs, tokens = {}, {}
    for name, runner in RUNNERS.items():
        print(f"[scale] dask part: {name} ...", flush=True)
        fig: dict[str, Any] = dict(overhead_flow(runner))
        t0 = time.perf_counter()
        result = active_learning_flow(config=_al_config(root, work / name / "al", args, runner,
                                                        shard_images))
        fig["al_round_s"] = time.perf_counter() - t0
        fig["al_miou"] = [r["miou"] for r in result.rounds]
        al_outputs[name] = _al_outputs(work / name / "al" / "ws")
        t0 = time.perf_counter()
        summary = embed_flow(config=_embed_config(root, work / name / "embed", runner,
                                                  embed_images))
        fig["embed_s"] = time.perf_counter() - t0
        tokens[name] = store.read_embeddings(str(summary["output"])).tokens
        out["runners"][name] = fig
    first = next(iter(RUNNERS))
    out["identical"] = {
        "al_rounds_and_scans": all(al_outputs[n] == al_outputs[first] for n in RUNNERS),
        "al_miou": all(out["runners"][n]["al_miou"] == out["runners"][first]["al_miou"]
                       for n in RUNNERS),
        "embed_tokens": all(bool((tokens[n] == tokens[first]).all()) for n in RUNNERS),
    }
    out["al_shards_checked"] = len(al_outputs[first]["scans"])
    out["torch_threads"] = 1
    return out
