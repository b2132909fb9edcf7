"""segloop's kill / concurrency / bad-input / disk-full guarantees, measured.

Every flow (tiny models, generated data) is SIGKILLed (its whole process group) at each of
its named kill points and at random times, rerun, and compared with an uninterrupted run;
pairs of flows run at once on one workspace; the bad-input and disk-full cases of
``tests/faults`` run through pytest. Writes ``benchmarks/results/reliability.json`` and
``reliability.png``.

    .venv/bin/python benchmarks/reliability.py            # ~45 minutes on 2 cores
    .venv/bin/python benchmarks/reliability.py --only kill --flows smoke
    .venv/bin/python benchmarks/reliability.py --plot-only

Parts: ``kill`` (named points), ``random`` (kill times), ``concurrent``, ``inputs`` (bad
inputs and disk full, from pytest), ``labelstudio`` (the round trip against a real Label
Studio server, ``pytest -m labelstudio``; the first run pip-installs Label Studio into its
own venv). Results are merged into the JSON part by part, so a part can be rerun alone.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "results" / "reliability.json"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
if "SEGLOOP_LOCK_DIR" not in os.environ:
    os.environ["SEGLOOP_LOCK_DIR"] = tempfile.mkdtemp(prefix="segloop-locks-")
    atexit.register(shutil.rmtree, os.environ["SEGLOOP_LOCK_DIR"], ignore_errors=True)

from segloop.reliability import cases, concurrency, harness  # noqa: E402
from segloop.reliability.plan import KILL_CASES, RANDOM_FRACTIONS  # noqa: E402

PARTS = ("kill", "random", "concurrent", "inputs", "labelstudio")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", default=list(PARTS), choices=PARTS)
    p.add_argument("--flows", nargs="*", default=list(cases.FLOWS), choices=cases.FLOWS)
    p.add_argument("--seed", type=int, default=0, help="random kill times")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--plot-only", action="store_true")
    return p.parse_args(argv)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def per_flow(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        c = out.setdefault(r["flow"], {"tried": 0, "survived": 0})
        c["tried"] += 1
        c["survived"] += int(r["survived"])
    return out


def kill_part(flows: list[str], api_url: str, work: Path, rng: random.Random | None
              ) -> list[dict[str, Any]]:
    rows = []
    for flow in flows:
        ref, seconds = harness.reference_run(flow, work / f"ref-{flow}", api_url)
        if rng is None:
            todo = [(p, None) for f, p in KILL_CASES if f == flow]
        else:
            todo = [(None, seconds * f * rng.uniform(0.9, 1.1)) for f in RANDOM_FRACTIONS]
        for n, (point, after) in enumerate(todo):
            base = work / f"{flow}-{'p' if point else 't'}{n}"
            r = harness.kill_case(flow, base, api_url, ref, kill_at=point, kill_after=after)
            print(f"{flow:>16} {r.kill:<26} killed={r.killed!s:<5} survived={r.survived} "
                  f"({r.seconds:.0f} s)", flush=True)
            for problem in r.problems:
                print("      " + problem.replace("\n", "\n      ")[:2000], flush=True)
            rows.append({"flow": flow, "kill": r.kill, "killed": r.killed,
                         "survived": r.survived, "problems": r.problems,
                         "seconds": r.seconds})
    return rows


def concurrent_part(flows: list[str], api_url: str, work: Path) -> list[dict[str, Any]]:
    rows = []
    for pair in concurrency.PAIRS:
        if not set(pair) <= set(flows):
            continue
        r = concurrency.run_pair(pair, work / f"pair-{pair[0]}-{pair[1]}", api_url)
        print(f"{' + '.join(pair):>34}: exits {r.codes}, refused {r.refused}, "
              f"safe={r.safe}", flush=True)
        for problem in r.problems:
            print("      " + problem[:2000], flush=True)
        rows.append({"flows": list(pair), "exits": list(r.codes), "refused": r.refused,
                     "safe": r.safe, "problems": r.problems})
    return rows


#: pytest selections whose cases are bad inputs (each a kind of file or value).
BAD_INPUT_TESTS = ("tests/faults/test_bad_json.py", "tests/faults/test_bad_files.py",
                   "tests/labeling/test_ingest.py -k refuses",
                   "tests/labeling/test_labelstudio.py -k bad_rle or crafted",
                   "tests/labeling/test_coco.py -k label_studio_coco",
                   "tests/data/test_manifest_dataset.py -k outside")


def inputs_part() -> dict[str, Any]:
    """Run the bad-input and disk-full tests; count their cases from pytest's summary."""
    out: dict[str, Any] = {}
    for key, targets in (("bad_inputs", BAD_INPUT_TESTS),
                         ("disk_full_cases", ("tests/faults/test_disk_full.py",))):
        args = []
        for t in targets:
            path, _, expr = t.partition(" -k ")
            args.append((path, expr))
        lines: list[str] = []
        for path, expr in args:
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p",
                                   "no:cacheprovider", path, *(["-k", expr] if expr else [])],
                                  cwd=REPO, capture_output=True, text=True)
            lines += [ln for ln in proc.stdout.splitlines()
                      if ln.startswith(("PASSED", "FAILED"))]
        out[key] = _count(lines)
    return out


def labelstudio_part() -> dict[str, Any]:
    """The end-to-end test against a real Label Studio (installed in its own venv on first
    use: see tests/labelstudio/conftest.py)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-m", "labelstudio", "tests/labelstudio"],
                          cwd=REPO, capture_output=True, text=True)
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    print(f"Label Studio round trip: {tail[0]}", flush=True)
    if proc.returncode:
        print(proc.stdout[-4000:], proc.stderr[-2000:], flush=True)
    return {"passed": proc.returncode == 0, "summary": tail[0],
            "label_studio": "1.23.2", "minutes": round((time.perf_counter() - start) / 60, 1),
            "covers": ["tasks and labelling interface imported over the API",
                       "task images served through Local Storage",
                       "pre-annotations submitted unchanged: refused",
                       "a stroke outside the units: refused, naming the task",
                       "exact labels: round committed, equal to the ground truth",
                       "the next round in the same project: committed"]}


def _count(lines: list[str]) -> dict[str, Any]:
    passed = sum(ln.startswith("PASSED") for ln in lines)
    return {"tried": len(lines), "clear_error": passed, "unchanged_state": passed,
            "failed": [ln.split(" ", 1)[1] for ln in lines if ln.startswith("FAILED")]}


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    kills = data.get("kill_rows", []) + data.get("random_rows", [])
    pairs = data.get("concurrent_rows", [])
    return {
        "kill_cases": {"tried": len(kills), "survived": sum(r["survived"] for r in kills),
                       "reached": sum(r["killed"] for r in kills), "per_flow": per_flow(kills)},
        "concurrent_cases": {"tried": len(pairs), "safe": sum(r["safe"] for r in pairs)},
    }


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = data.get("kill_cases", {}).get("per_flow", {})
    groups = [(f, c["tried"], c["survived"]) for f, c in per.items()]
    for key, label in (("concurrent_cases", "concurrency"), ("bad_inputs", "bad inputs"),
                       ("disk_full_cases", "disk full")):
        c = data.get(key) or {}
        if c.get("tried"):
            groups.append((label, c["tried"], c.get("safe", c.get("clear_error", 0))))
    trip = (data.get("label_studio_round_trip") or {}).get("passed")
    if trip is not None:
        groups.append(("Label Studio", 1, int(trip)))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = [g[0] for g in groups]
    ax.bar(names, [g[1] for g in groups], color="#d9d9d9", label="tried")
    ax.bar(names, [g[2] for g in groups], color="#4c9a2a", label="survived / safe / clear")
    ax.set_ylabel("cases")
    ax.set_title("segloop reliability: SIGKILL, concurrency, bad input, disk full")
    ax.legend(frameon=False)
    plt.setp(ax.get_xticklabels(), rotation=25, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    data = _load(out)
    if not args.plot_only:
        from prefect.settings import PREFECT_API_URL
        from prefect.testing.utilities import prefect_test_harness

        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="segloop-reliability-") as tmp, \
                prefect_test_harness(server_startup_timeout=None):
            api_url = str(PREFECT_API_URL.value())
            work = Path(tmp)
            if "kill" in args.only:
                data["kill_rows"] = kill_part(args.flows, api_url, work / "kill", None)
            if "random" in args.only:
                data["random_rows"] = kill_part(args.flows, api_url, work / "random",
                                                random.Random(args.seed))
            if "concurrent" in args.only:
                data["concurrent_rows"] = concurrent_part(args.flows, api_url,
                                                          work / "pairs")
        if "inputs" in args.only:
            data.update(inputs_part())
        if "labelstudio" in args.only:
            data["label_studio_round_trip"] = labelstudio_part()
        data["settings"] = {"flows": list(cases.FLOWS), "random_fractions":
                            list(RANDOM_FRACTIONS), "seed": args.seed}
        data.pop("minutes_last_run", None)
        data["minutes"] = {**data.get("minutes", {}),
                           "+".join(args.only): round((time.perf_counter() - start) / 60, 1)}
    data.update(summarize(data))
    _save(out, data)
    plot(data, out.with_suffix(".png"))
    print(json.dumps({k: data[k] for k in ("kill_cases", "concurrent_cases")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
