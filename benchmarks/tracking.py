"""What MLflow tracking costs the demo loop, and how long a FiftyOne export of it takes (a
benchmark, not a test).

Protocol (fixed):

- The demo pipeline (``pipelines/camvid-al-demo.yaml``: 120 CamVid pool images at 72x96, 4
  label rounds, a 500-step U-Net per round, a random baseline) run as users run it,
  ``segloop run active_learning --pipeline ...`` (Prefect's local server in the child
  process), each run in a fresh temporary workspace: once with ``tracking.mlflow: false``
  and once with ``tracking.mlflow: true`` (a SQLite store in the workspace), ``--repeats``
  pairs, the order alternating (off/on, then on/off) so that drift of the machine's speed
  hits both alike.
- Reported: each run's wall time; ``overhead`` = (median on - median off) / median off;
  and, less noisy, ``tracking_fraction`` = the seconds the tracked run spent inside
  segloop's MLflow calls (``tracking_seconds``, logged by the loop itself) / its wall time.
  Target: overhead at most 3%.
- Where the time goes: each run's ``train_seconds`` (the rounds' training, summed from its
  round records) and the rest (data, scoring, selection, DVC commits, reports, tracking), so
  that a difference in wall time can be told apart from the training's own noise.
- FiftyOne: ``segloop fiftyone export`` of the last tracked workspace (its 120 pool images,
  ground truth, the 4 rounds' labels, scores and picks, the last model's predictions), then
  the same export again (nothing to change), timed in this process, database start
  included in the first. With ``--full-pool``, also a loop over the whole CamVid training
  pool (367 images, the demo's settings but 50 training steps a round: only the export is
  timed) exported the same way.

Writes ``benchmarks/results/tracking.json`` and ``tracking.png``.

    python benchmarks/tracking.py             # ~11 min on 2 cores (1 pair)
    python benchmarks/tracking.py --quick     # a tiny generated dataset: checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
DEMO = REPO / "pipelines" / "camvid-al-demo.yaml"
TARGET_OVERHEAD = 0.03


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=1, help="pairs of runs (off, on)")
    p.add_argument("--quick", action="store_true", help="tiny generated data: checks only")
    p.add_argument("--no-fiftyone", action="store_true", help="skip the FiftyOne export")
    p.add_argument("--full-pool", action="store_true",
                   help="also export a 4-round loop over the whole CamVid training pool")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def pipeline(tmp: Path, name: str, tracked: bool, quick: bool, full_pool: bool = False) -> Path:
    """The demo pipeline (or a tiny one) with its workspace under ``tmp/name``;
    ``full_pool``: every training image, 50 steps a round, no random baseline."""
    cfg: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    cfg["base"]["paths"] = {"workspace": str(tmp / name / "ws"),
                            "dvc_remote": str(tmp / name / "remote"),
                            "prefect_home": str(tmp / "prefect"),
                            "reports": str(tmp / name / "reports")}
    cfg["tracking"] = {"mlflow": tracked}
    if full_pool:
        cfg["active"].update(pool_limit=None, compare_random=False)
        cfg["train"]["steps"] = 50
    if quick:
        from segloop.testing import write_camvid

        root = tmp / "camvid"
        if not root.is_dir():
            write_camvid(str(root), {"train": 12, "val": 4}, hw=(24, 32))
        cfg["data"] = {"root": str(root)}
        cfg["train"].update(width=4, steps=4)
        cfg["active"].update(image_size=[24, 32], pool_limit=None, initial_fraction=0.2,
                             budget_per_round=0.2)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_loop(path: Path) -> float:
    """``segloop run active_learning --pipeline path`` in a child process; its wall seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["HF_HUB_OFFLINE"] = "1"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "segloop.cli", "run", "active_learning",
                           "--pipeline", str(path)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{path.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return seconds


def train_seconds(path: Path) -> float:
    """The rounds' training seconds, summed from the workspace's round records."""
    from segloop.config import load_config

    ws = Path(load_config(str(path)).base.paths.workspace)
    return sum(float(json.loads(f.read_text()).get("train_seconds", 0.0))
               for f in sorted((ws / "metrics" / "rounds").glob("round_*.json")))


def tracking_seconds(path: Path) -> float:
    """The ``tracking_seconds`` the loop logged on its MLflow run."""
    import mlflow

    from segloop.config import load_config
    from segloop.tracking.mlflow_runs import tracking_uri

    client = mlflow.MlflowClient(tracking_uri=tracking_uri(load_config(str(path))))
    exp = client.get_experiment_by_name("segloop-active_learning")
    (run,) = [r for r in client.search_runs([exp.experiment_id])
              if "mlflow.parentRunId" not in r.data.tags]
    return float(run.data.metrics["tracking_seconds"])


def fiftyone_export(path: Path) -> dict[str, Any]:
    from segloop.config import load_config
    from segloop.tracking.fiftyone_db import stop_database
    from segloop.tracking.fiftyone_workspace import export_workspace

    cfg = load_config(str(path))
    started = time.perf_counter()
    first = export_workspace(cfg)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    again = export_workspace(cfg)
    again_s = time.perf_counter() - started
    stop_database()
    rounds = sum(f.startswith("labels_r") for f in first.changed)
    return {"samples": first.samples, "rounds": rounds,
            "fields": sorted(first.changed),
            "first_seconds": round(first_s, 2), "again_seconds": round(again_s, 2),
            "again_changed": sum(again.changed.values())}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or RESULTS / ("tracking_quick.json" if args.quick else "tracking.json")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="segloop-tracking-") as tmp_name:
        tmp = Path(tmp_name)
        last_on = None
        for i in range(args.repeats):
            order = (False, True) if i % 2 == 0 else (True, False)
            for tracked in order:
                name = f"{'on' if tracked else 'off'}{i}"
                path = pipeline(tmp, name, tracked, args.quick)
                seconds = run_loop(path)
                train = train_seconds(path)
                row: dict[str, Any] = {"tracking": "on" if tracked else "off", "pair": i,
                                       "wall_seconds": round(seconds, 2),
                                       "train_seconds": round(train, 2),
                                       "rest_seconds": round(seconds - train, 2)}
                if tracked:
                    row["tracking_seconds"] = round(tracking_seconds(path), 3)
                    last_on = path
                runs.append(row)
                print(f"pair {i}: tracking {row['tracking']}: {seconds:.1f} s"
                      + (f" ({row['tracking_seconds']:.2f} s in MLflow calls)"
                         if tracked else ""), flush=True)
        fo = None if args.no_fiftyone or last_on is None else fiftyone_export(last_on)
        fo_full = None
        if args.full_pool and not args.no_fiftyone:
            path = pipeline(tmp, "full", True, args.quick, full_pool=True)
            run_loop(path)
            fo_full = fiftyone_export(path)
    off = statistics.median(r["wall_seconds"] for r in runs if r["tracking"] == "off")
    on = statistics.median(r["wall_seconds"] for r in runs if r["tracking"] == "on")
    inside = statistics.median(r["tracking_seconds"] for r in runs if r["tracking"] == "on")
    split = {side: {part: statistics.median(r[f"{part}_seconds"] for r in runs
                                            if r["tracking"] == side)
                    for part in ("train", "rest")} for side in ("off", "on")}
    result = {
        "protocol": {"pipeline": "quick (generated 24x32)" if args.quick
                     else "pipelines/camvid-al-demo.yaml", "repeats": args.repeats,
                     "command": "segloop run active_learning", "store": "sqlite (workspace)"},
        "runs": runs, "wall_off_seconds": off, "wall_on_seconds": on,
        "overhead": round((on - off) / off, 4),
        "tracking_seconds": inside, "tracking_fraction": round(inside / on, 4),
        "median_split_seconds": split,
        "target_overhead": TARGET_OVERHEAD,
        "met": bool((on - off) / off <= TARGET_OVERHEAD),
        "fiftyone_export": fo,
        "fiftyone_export_full_pool": fo_full,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    print(json.dumps({k: result[k] for k in ("wall_off_seconds", "wall_on_seconds", "overhead",
                                             "tracking_fraction", "fiftyone_export")}, indent=1))
    return 0


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), constrained_layout=True)
    on = result["wall_on_seconds"]
    ax.barh(["tracking off", "tracking on"], [result["wall_off_seconds"], on],
            color=["C0", "C1"])
    ax.barh(["tracking on"], [result["tracking_seconds"]], color="C3",
            label="inside MLflow calls")
    ax.set_xlabel("wall seconds (median)")
    ax.set_title(f"demo loop: MLflow overhead {100 * result['overhead']:+.1f}% "
                 f"(in its calls {100 * result['tracking_fraction']:.1f}%; target <= "
                 f"{100 * result['target_overhead']:.0f}%)", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
