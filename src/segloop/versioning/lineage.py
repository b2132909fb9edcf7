"""Lineage: what made each versioned artifact, and from which parents.

Every dataset version, label round, seed round and model checkpoint that segloop versions
gets a ``<path>.lineage.json`` beside its ``<path>.dvc``, committed (and tagged) with it:

- ``code``: the git sha of the segloop source it ran from and whether that tree had
  uncommitted changes (None for an installed wheel: its ``segloop_version`` says it);
- ``config_hash``: sha256 (first 16 hex digits) of the whole validated config;
- ``flow_run_id``: the Prefect flow run that made it (None outside a flow);
- ``parents``: each a role ("dataset", "labels", "previous round", "model", "seed round",
  "embeddings", ...), the parent's workspace path and the workspace commit that versioned
  it (and its tag where it has one), or, for data outside the workspace, its ``source``.

The record is written only when the artifact itself changed, so rerunning a finished flow
commits nothing. ``segloop lineage <tag or path>`` prints the chain (:func:`format_chain`).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from segloop.data.json_io import dumps, write_json
from segloop.errors import VersioningError
from segloop.versioning.commands import git_try

SUFFIX = ".lineage.json"
SCHEMA = 1


@dataclass(frozen=True)
class Parent:
    """One input of an artifact: ``path`` (workspace-relative, posix) at ``commit``; ``tag``
    where it has one; ``source`` (a URI) for data that is not versioned in the workspace."""

    role: str
    path: str | None = None
    commit: str | None = None
    tag: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def lineage_file(rel: str) -> str:
    """The lineage record's path for the versioned path ``rel`` (both workspace-relative)."""
    return rel.rstrip("/") + SUFFIX


@lru_cache(maxsize=1)
def code_identity() -> dict[str, Any]:
    """``{"segloop_version", "sha", "dirty"}`` of the running segloop: sha and dirty flag of
    the git checkout its source lies in (None when installed from a wheel)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("segloop")
    except PackageNotFoundError:
        ver = None
    src = Path(__file__).resolve().parents[3]  # the checkout holding src/segloop
    sha = dirty = None
    try:
        top = _git_out(src, "rev-parse", "--show-toplevel")
        if top and (Path(top) / "src" / "segloop").is_dir():
            sha = _git_out(src, "rev-parse", "HEAD")
            status = _git_out(src, "status", "--porcelain", "--untracked-files=no")
            dirty = None if status is None else bool(status)
    except OSError:  # no git on PATH
        pass
    return {"segloop_version": ver, "sha": sha, "dirty": dirty}


def _git_out(cwd: Path, *args: str) -> str | None:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    return proc.stdout.strip() if proc.returncode == 0 else None


def config_hash(config: Any) -> str:
    """sha256 (16 hex digits) of a config: a pydantic model or a JSON-able mapping."""
    data = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def current_flow_run_id() -> str | None:
    """The id of the Prefect flow run this code runs in, or None."""
    try:
        from prefect.runtime import flow_run

        run_id = flow_run.id
    except Exception:  # noqa: BLE001 - no Prefect context is not an error here
        return None
    return str(run_id) if run_id else None


def make_record(kind: str, config: Any, parents: list[Parent | None]) -> dict[str, Any]:
    """A lineage record for an artifact of ``kind`` made under ``config`` (None: no config)
    from ``parents`` (None entries, for parents that do not apply, are dropped)."""
    return {
        "schema": SCHEMA,
        "kind": kind,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_identity(),
        "config_hash": None if config is None else config_hash(config),
        "flow_run_id": current_flow_run_id(),
        "parents": [p.to_dict() for p in parents if p is not None],
    }


def write_record(root: Path, rel: str, record: dict[str, Any]) -> str:
    """Write ``record`` (plus its ``path``) beside ``rel``; returns the record's path."""
    name = lineage_file(rel)
    write_json(root / name, {**record, "path": rel})
    return name


def versioned(root: Path, rel: str, role: str, tag: str | None = None) -> Parent | None:
    """``rel`` as a parent: the last commit that changed its ``.dvc`` file (None when
    ``rel`` is not versioned in the workspace at ``root``)."""
    commit = git_try(root, "log", "-1", "--format=%H", "--", f"{rel.rstrip('/')}.dvc")
    return Parent(role, path=rel.rstrip("/"), commit=commit, tag=tag) if commit else None


def data_parent(root: Path, location: str, role: str = "dataset") -> Parent:
    """A data location as a parent: versioned in the workspace when it lies inside ``root``
    and has a ``.dvc`` file, else its ``source`` as given."""
    path = Path(location).expanduser()
    if "://" not in location and path.is_absolute():
        try:
            rel = path.resolve().relative_to(root).as_posix()
        except ValueError:
            rel = None
        if rel and (found := versioned(root, rel, role)):
            return found
    return Parent(role, source=location)


def read_record(root: Path, path: str, commit: str) -> dict[str, Any] | None:
    """The lineage record of ``path`` as of ``commit`` (None if it has none there)."""
    text = git_try(root, "show", f"{commit}:{lineage_file(path)}")
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise VersioningError(f"{lineage_file(path)} at {commit[:12]} is not valid JSON: "
                              "it was edited by hand; restore it from git") from None


def resolve(root: Path, ref: str) -> Parent:
    """A tag (``labels/r002``), a versioned path (``models/round_001.safetensors``, the
    latest version) or ``PATH@COMMIT`` as the artifact to start a chain from."""
    path, _, at = ref.partition("@")
    commit = git_try(root, "rev-parse", "--verify", "--quiet", f"refs/tags/{ref}^{{commit}}")
    if commit:
        changed = git_try(root, "diff-tree", "--root", "--no-commit-id", "--name-only", "-r",
                          commit) or ""
        records = [n[: -len(SUFFIX)] for n in changed.splitlines() if n.endswith(SUFFIX)]
        if len(records) != 1:
            raise VersioningError(
                f"tag {ref} points at commit {commit[:12]}, which records "
                f"{'no' if not records else len(records)} lineage file(s): it was made "
                "before segloop recorded lineage, or by hand")
        return Parent("artifact", path=records[0], commit=commit, tag=ref)
    path = path.strip("/")
    if at:
        commit = git_try(root, "rev-parse", "--verify", "--quiet", f"{at}^{{commit}}")
    else:
        commit = git_try(root, "log", "-1", "--format=%H", "--", lineage_file(path))
    if not commit:
        raise VersioningError(
            f"{ref!r} is neither a tag nor a path with recorded lineage in {root}; "
            "give a round's tag (`segloop rounds list` shows them), a versioned path such as "
            "models/round_001.safetensors, or PATH@COMMIT")
    return Parent("artifact", path=path, commit=commit)


def chain(root: Path, start: Parent, max_depth: int = 50) -> list[tuple[int, Parent,
                                                                       dict[str, Any] | None]]:
    """Depth-first walk from ``start`` through recorded parents: (depth, parent, record or
    None). An artifact reached twice is listed again without its parents."""
    out: list[tuple[int, Parent, dict[str, Any] | None]] = []
    seen: set[tuple[str | None, str | None]] = set()

    def visit(node: Parent, depth: int) -> None:
        key = (node.path, node.commit)
        record = (read_record(root, node.path, node.commit)
                  if node.path and node.commit else None)
        out.append((depth, node, record))
        if key in seen or record is None or depth >= max_depth:
            return
        seen.add(key)
        for p in record.get("parents", []):
            visit(Parent(**p), depth + 1)

    visit(start, 0)
    return out


def format_chain(root: Path, ref: str) -> str:
    """Text for ``segloop lineage``: one block per artifact, parents indented below it."""
    lines = []
    shown: set[tuple[str | None, str | None]] = set()
    for depth, node, record in chain(root, resolve(root, ref)):
        pad = "    " * depth
        head = node.path or node.source or "?"
        where = [f"tag {node.tag}"] if node.tag else []
        if node.commit:
            where.append(f"commit {node.commit[:12]}")
        role = "" if depth == 0 else f"{node.role}: "
        kind = f"{record['kind']} " if record else ""
        lines.append(f"{pad}{role}{kind}{head}" + (f" ({', '.join(where)})" if where else ""))
        key = (node.path, node.commit)
        if record is None:
            if node.path and node.commit:
                lines.append(f"{pad}    (no lineage recorded)")
            continue
        if key in shown:
            lines.append(f"{pad}    (shown above)")
            continue
        shown.add(key)
        code = record.get("code") or {}
        sha = code.get("sha")
        code_text = (f"{sha[:12]}{' +uncommitted changes' if code.get('dirty') else ''}"
                     if sha else "not from a git checkout")
        lines.append(f"{pad}    made {record.get('created')} by segloop "
                     f"{code.get('segloop_version')} (code {code_text}), config "
                     f"{record.get('config_hash')}, flow run {record.get('flow_run_id') or '-'}")
    return "\n".join(lines)


def record_json(root: Path, ref: str) -> str:
    """The chain as JSON (``segloop lineage --json``)."""
    return dumps([{"depth": d, **p.to_dict(), "record": r}
                  for d, p, r in chain(root, resolve(root, ref))])
