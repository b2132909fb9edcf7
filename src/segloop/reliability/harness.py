"""Run a flow in a child process, kill it (SIGKILL to its process group) at a named point
or after a delay, rerun it to completion, and check the workspace against an uninterrupted
run.

The child is ``python -m segloop.cli run FLOW --pipeline P`` in its own session, talking to
the Prefect server at ``api_url`` (the caller's; a child would otherwise start its own).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segloop.faults import ENV as KILL_ENV
from segloop.reliability import cases
from segloop.versioning.commands import dvc, git

REPO = Path(__file__).resolve().parents[3]
TEMP_MARKERS = (".tmp", ".partial-")


@dataclass
class Run:
    """One child run: exit code (negative: killed by that signal), seconds, output tail."""

    code: int
    seconds: float
    output: str

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL


def start_flow(flow: str, config: Path, api_url: str | None,
               kill_at: str | None = None) -> subprocess.Popen[str]:
    """``segloop run flow --pipeline config`` in a new session (its own process group),
    against the Prefect server at ``api_url``, with ``kill_at`` as its kill point."""
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    env.update(HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    if kill_at:
        env[KILL_ENV] = kill_at
    return subprocess.Popen([sys.executable, "-m", "segloop.cli", "run", flow, "--pipeline",
                             str(config)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def run_flow(flow: str, config: Path, api_url: str | None, *, kill_at: str | None = None,
             kill_after: float | None = None, timeout: float = 600) -> Run:
    """Run ``flow`` with ``config`` in a child process group; ``kill_at`` sets the kill point
    (``name`` or ``name:n``), ``kill_after`` SIGKILLs the group after that many seconds."""
    start = time.perf_counter()
    proc = start_flow(flow, config, api_url, kill_at)
    try:
        out, _ = proc.communicate(timeout=kill_after if kill_after is not None else timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        if kill_after is None:
            raise RuntimeError(f"{flow} did not finish within {timeout} s:\n{out[-3000:]}") \
                from None
        return Run(-signal.SIGKILL, time.perf_counter() - start, out[-4000:])
    return Run(proc.returncode, time.perf_counter() - start, out[-4000:])


@dataclass
class Snapshot:
    """What must not depend on whether a run was interrupted."""

    tags: list[str]                            # every git tag
    data: dict[str, str]                       # DVC-tracked path -> content digest
    metrics: dict[str, Any]                    # git-tracked metrics files at HEAD
    tables: dict[str, list[str]] = field(default_factory=dict)  # table -> sorted row keys
    problems: list[str] = field(default_factory=list)


def _digest(path: Path) -> str:
    """A file's content without wall times: JSON and Parquet with time fields dropped,
    safetensors by tensors and metadata (minus times), anything else by bytes."""
    import hashlib

    if path.suffix == ".json":
        data = _without_times(json.loads(path.read_text()))
        raw = json.dumps(data, sort_keys=True).encode()
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        raw = json.dumps(_without_times(rows), sort_keys=True, default=str).encode()
    elif path.suffix == ".safetensors":
        from safetensors import safe_open

        h = hashlib.sha256()
        with safe_open(str(path), framework="numpy") as fh:
            meta = {k: (_without_times(json.loads(v)) if v.startswith("{") else v)
                    for k, v in (fh.metadata() or {}).items()}
            h.update(json.dumps(meta, sort_keys=True).encode())
            for key in sorted(fh.keys()):
                h.update(key.encode() + fh.get_tensor(key).tobytes())
        return h.hexdigest()[:16]
    else:
        raw = path.read_bytes()
    return hashlib.sha256(raw).hexdigest()[:16]


def _versioned(root: Path) -> dict[str, str]:
    """Every DVC-tracked path at HEAD -> a digest of its files' contents (without times)."""
    import hashlib

    out = {}
    for dvc_file in sorted(git(root, "ls-files", "*.dvc").splitlines()):
        target = root / dvc_file[: -len(".dvc")]
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [
            target]
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.relative_to(root)}={_digest(f)};".encode())
        out[dvc_file[: -len(".dvc")]] = h.hexdigest()[:16]
    return out


def snapshot(base: Path) -> Snapshot:
    """Tags, metrics and table keys of a case's workspace, and any broken invariant:
    a dirty ``dvc status``, data missing from the remote, temporary files left inside the
    data, duplicate or missing rows, manifest rows without their files."""
    root = (base / "ws").resolve()
    tags = sorted(t for t in git(root, "tag", "--list").splitlines() if t)
    metrics = {rel: _without_times(json.loads((root / rel).read_text()))
               for rel in git(root, "ls-files", "metrics").splitlines()}
    problems: list[str] = []
    status = json.loads(dvc(root, "status", "--json") or "{}")
    if status:
        problems.append(f"dvc status not clean: {status}")
    cloud = json.loads(dvc(root, "status", "--cloud", "--json") or "{}")
    if cloud:
        problems.append(f"remote incomplete: {cloud}")
    if git(root, "status", "--porcelain"):
        problems.append(f"git status not clean: {git(root, 'status', '--porcelain')}")
    for path in (root / "data").rglob("*") if (root / "data").exists() else []:
        if path.name.startswith(".") and any(m in path.name for m in TEMP_MARKERS):
            problems.append(f"temporary file left: {path.relative_to(root)}")
    tables = _table_keys(root, problems)
    return Snapshot(tags, _versioned(root), metrics, tables, problems)


def _table_keys(root: Path, problems: list[str]) -> dict[str, list[str]]:
    from segloop.data.parquet import read_table
    from segloop.embed import store as embed_store
    from segloop.synth import store as synth_store

    out: dict[str, list[str]] = {}
    for folder in sorted((root / "data" / "synthetic").glob("*")) if (
            root / "data" / "synthetic").is_dir() else []:
        if not folder.is_dir():
            continue
        table = synth_store.read_manifest(str(folder))
        keys = [f"{r['label']}/{r['index']}" for r in
                table.select(["label", "index"]).to_pylist()]
        if len(keys) != len(set(keys)):
            problems.append(f"{folder.name}: duplicate manifest rows")
        for uri in table.column("image_uri").to_pylist():
            if not (folder / uri).is_file():
                problems.append(f"{folder.name}: manifest row without its file {uri}")
        out[f"synthetic/{folder.name}"] = sorted(keys)
    for folder in sorted((root / "data" / "embeddings").glob("*")) if (
            root / "data" / "embeddings").is_dir() else []:
        if not folder.is_dir():
            continue
        names, _ = embed_store.present(str(folder))
        out[f"embeddings/{folder.name}"] = sorted(names)
        if (folder / "masks").exists():
            rows = read_table(str(folder / "masks"), columns=["name"])
            per_image: dict[str, int] = {}
            for i in rows.column("name").to_pylist():
                per_image[i] = per_image.get(i, 0) + 1
            if len(set(per_image.values())) > 1:
                problems.append(f"embeddings/{folder.name}: images with different mask "
                                f"counts (duplicated rows?) {per_image}")
    return out


def compare(got: Snapshot, reference: Snapshot) -> list[str]:
    """Differences from the uninterrupted run, plus ``got``'s broken invariants."""
    diffs = list(got.problems)
    if got.tags != reference.tags:
        diffs.append(f"tags differ: {got.tags} vs {reference.tags}")
    if got.data != reference.data:
        diffs.append("versioned data differ: " + ", ".join(
            k for k in sorted(set(got.data) | set(reference.data))
            if got.data.get(k) != reference.data.get(k)))
    if got.metrics != reference.metrics:
        diffs.append("metrics differ: " + ", ".join(
            k for k in sorted(set(got.metrics) | set(reference.metrics))
            if got.metrics.get(k) != reference.metrics.get(k)))
    if got.tables != reference.tables:
        diffs.append("table rows differ: " + ", ".join(
            k for k in set(got.tables) | set(reference.tables)
            if got.tables.get(k) != reference.tables.get(k)))
    return diffs


# wall times and git commit ids (which hold commit times) differ between any two runs
_TIME_KEYS = ("seconds", "time", "date", "created", "_at", "per_second", "commit")


def _without_times(value: Any) -> Any:
    """``value`` without wall-time and commit-id fields (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items()
                if not any(t in k for t in _TIME_KEYS)}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def prepare_case(flow: str, base: Path, api_url: str | None) -> Path:
    """Write ``flow``'s pipeline under ``base`` and run its prerequisites; returns the
    pipeline file."""
    config = cases.pipeline(flow, base)
    for before in cases.PREREQUISITES.get(flow, ()):
        r = run_flow(before, config, api_url)
        if r.code != 0:
            raise RuntimeError(f"prerequisite {before} of {flow} failed:\n{r.output}")
    return config


@dataclass
class CaseResult:
    flow: str
    kill: str
    killed: bool
    survived: bool
    problems: list[str]
    seconds: float


def kill_case(flow: str, base: Path, api_url: str | None, reference: Snapshot, *,
              kill_at: str | None = None, kill_after: float | None = None) -> CaseResult:
    """Kill ``flow`` once, rerun it, compare with ``reference``."""
    start = time.perf_counter()
    config = prepare_case(flow, base, api_url)
    first = run_flow(flow, config, api_url, kill_at=kill_at, kill_after=kill_after)
    label = kill_at or f"after {kill_after:.1f} s"
    problems = []
    if first.code not in (0, -signal.SIGKILL):
        problems.append(f"the killed run failed otherwise (exit {first.code}):\n"
                        f"{first.output[-2000:]}")
    rerun = run_flow(flow, config, api_url)
    if rerun.code != 0:
        problems.append(f"the rerun failed (exit {rerun.code}):\n{rerun.output[-2000:]}")
    else:
        problems += compare(snapshot(base), reference)
    return CaseResult(flow, label, first.killed, not problems, problems,
                      round(time.perf_counter() - start, 1))


def reference_run(flow: str, base: Path, api_url: str | None) -> tuple[Snapshot, float]:
    """An uninterrupted run of ``flow`` under ``base``: its snapshot and wall seconds."""
    config = prepare_case(flow, base, api_url)
    r = run_flow(flow, config, api_url)
    if r.code != 0:
        raise RuntimeError(f"uninterrupted {flow} failed (exit {r.code}):\n{r.output}")
    snap = snapshot(base)
    if snap.problems:
        raise RuntimeError(f"uninterrupted {flow} broke invariants: {snap.problems}")
    return snap, r.seconds
