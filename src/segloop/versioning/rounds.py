"""Label rounds: append-only, DVC-versioned folders ``data/labels/round_NNN/``.

A round is written once (to a hidden temporary folder renamed into place when complete),
then ``dvc add``-ed, git committed, pushed to the DVC remote and tagged ``labels/rNNN``.
The tag is made last, so a tag means the round is complete and pushed; committing a
tagged round again is a no-op. Any round can be restored with :func:`checkout_round`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from segloop.data import temp_files
from segloop.data.json_io import json_default
from segloop.errors import VersioningError
from segloop.faults import kill_point
from segloop.versioning.commands import dvc, dvc_ok, git, git_ok, git_try, require_repo
from segloop.versioning.workspace import (
    REMOTE_NAME,
    Workspace,
    commit_paths,
    create_tag,
    ensure_identity,
    tag_commit,
    version_path,
    versioning_lock,
)

ROUND_DIR = "data/labels/round_{:03d}"
ROUND_TAG = "labels/r{:03d}"
METRICS_DIR = "metrics/rounds"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundKind:
    """A family of append-only rounds: folder and tag templates (``{:03d}`` = the number).

    :data:`LABELS` are the active-learning label rounds; :func:`seed_rounds` gives the
    pseudo-label (seed) rounds of one method, versioned the same way.
    """

    dir: str
    tag: str
    what: str = "label round"
    metrics: str = METRICS_DIR + "/round_{:03d}.json"

    def tag_pattern(self) -> re.Pattern[str]:
        prefix = self.tag.split("{", 1)[0]
        return re.compile("^" + re.escape(prefix) + r"(\d{3,})$")

    def tag_glob(self) -> str:
        return self.tag.split("{", 1)[0] + "*"


LABELS = RoundKind(ROUND_DIR, ROUND_TAG)


def seed_rounds(folder: str, method: str) -> RoundKind:
    """Pseudo-label rounds ``<folder>/round_NNN`` (workspace-relative), tagged
    ``pseudolabels/<method>/rNNN``."""
    return RoundKind(folder.rstrip("/") + "/round_{:03d}", f"pseudolabels/{method}/r{{:03d}}",
                     f"{method} pseudo-label round",
                     f"metrics/pseudolabels/{method}/round_{{:03d}}.json")


@dataclass(frozen=True)
class RoundInfo:
    """One committed label round.

    ``commit`` is the commit its tag points to, ``date`` the tag's date (ISO 8601),
    ``n_files`` / ``size_bytes`` come from the round's ``.dvc`` file as of the tag and
    ``metrics`` from ``metrics/rounds/round_NNN.json`` at HEAD (None if absent).
    """

    number: int
    tag: str
    path: Path
    commit: str
    created: bool
    date: str
    n_files: int
    size_bytes: int
    metrics: dict[str, Any] | None


def next_round_number(ws: Workspace, kind: RoundKind = LABELS) -> int:
    """The number the next round must have: 0 for the first, else the last tagged + 1."""
    numbers = _round_tags(ws.root, kind)
    return max(numbers) + 1 if numbers else 0


def commit_round(
    ws: Workspace,
    number: int,
    write: Callable[[Path], None],
    message: str | None = None,
    push: bool = True,
    kind: RoundKind = LABELS,
    lineage: dict[str, Any] | None = None,
) -> RoundInfo:
    """Write (``write(folder)``), version, push and tag label round ``number`` (with its
    ``lineage`` record, if given: :func:`segloop.versioning.lineage.make_record`).

    If the round is already tagged this returns its info with ``created=False`` and
    does not call ``write``. If ``data/labels/round_NNN/`` exists without a tag (a crash
    between writing and tagging) it is versioned as it is. Rounds are append-only:
    ``number`` must be :func:`next_round_number`.
    """
    _check_number(number)
    root = ws.root
    with versioning_lock(root):
        require_repo(root)
        tags = _round_tags(root, kind)
        if number in tags:
            return _round_info(ws, number, tags[number], created=False, kind=kind)
        expected = max(tags) + 1 if tags else 0
        if number != expected:
            raise VersioningError(
                f"cannot commit {kind.what} {number} in {root}: rounds are append-only and "
                f"the next round is {expected} (existing: {_describe(tags)}). "
                "Use segloop.versioning.next_round_number(ws)."
            )
        final = root / kind.dir.format(number)
        _remove_stale_temp_dirs(final.parent)
        if not final.exists():
            _write_atomically(final, number, write)
        elif not final.is_dir():
            raise VersioningError(f"{final} exists but is not a folder: move it away and retry")
        message = message or f"labels: round {number:03d}"
        kill_point("round.renamed")
        version_path(ws, kind.dir.format(number), message, push=push, lineage=lineage)
        tag = kind.tag.format(number)
        create_tag(root, tag, message)
        log.info("%s %d committed and tagged %s", kind.what, number, tag)
        kill_point("round.committed")
        return _round_info(ws, number, tag, created=True, kind=kind)


def retract_round(ws: Workspace, number: int, kind: RoundKind = LABELS) -> str:
    """Undo the latest round ``number`` (e.g. labels imported by mistake) without rewriting
    history: a new commit removes its ``.dvc`` file, folder and metrics record, and its tag
    is renamed ``<tag>-retracted-<k>`` (same commit, so the round stays restorable with
    ``git checkout <that tag> && dvc checkout``). The next round takes the number again.
    Returns the retraction's tag name. Only the latest round can be retracted: later
    rounds were chosen with it."""
    _check_number(number)
    root = ws.root
    with versioning_lock(root):
        tags = _existing_round(root, number, kind)
        if number != max(tags):
            raise VersioningError(
                f"only the latest {kind.what} ({max(tags)}) can be retracted, not {number}: "
                f"later rounds were selected with it. Retract {max(tags)} first, then "
                f"{number}.")
        tag = tags[number]
        k = 1
        while tag_commit(root, f"{tag}-retracted-{k}") is not None:
            k += 1
        kept = f"{tag}-retracted-{k}"
        git(root, "tag", "-a", "-m", f"retracted {kind.what} {number:03d}", kept,
            f"{tag}^{{commit}}")
        rel = kind.dir.format(number)
        paths = [p for p in (f"{rel}.dvc", kind.metrics.format(number))
                 if git_ok(root, "ls-files", "--error-unmatch", "--", p)]
        git(root, "rm", "-q", "--", *paths)
        ensure_identity(root)
        git(root, "commit", "-q", "-m",
            f"{kind.what} {number:03d} retracted (kept as tag {kept})", "--", *paths)
        git(root, "tag", "-d", tag)
        shutil.rmtree(root / rel, ignore_errors=True)
        return kept


def record_round_metrics(ws: Workspace, number: int, metrics: dict[str, Any],
                         kind: RoundKind = LABELS) -> None:
    """Write ``metrics/rounds/round_NNN.json`` (``kind.metrics``; git-tracked) and commit it
    if it changed."""
    _check_number(number)
    try:
        text = json.dumps(metrics, indent=2, sort_keys=True, default=json_default) + "\n"
    except (TypeError, ValueError) as exc:
        raise VersioningError(
            f"metrics of round {number} are not JSON-serialisable ({exc}): "
            "pass a dict of numbers, strings, lists and dicts"
        ) from exc
    root = ws.root
    with versioning_lock(root):
        require_repo(root)
        tags = _round_tags(root, kind)
        if number not in tags:
            raise VersioningError(
                f"cannot record metrics for {kind.what} {number} in {root}: the round is not "
                f"committed (existing: {_describe(tags)})"
            )
        rel = kind.metrics.format(number)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            tmp = path.with_name(temp_files.temp_name(path.name))
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        commit_paths(root, [rel], f"metrics: {kind.what} {number:03d}")
        kill_point("metrics.recorded")


def list_rounds(ws: Workspace, kind: RoundKind = LABELS) -> list[RoundInfo]:
    """All committed rounds (from the ``labels/r*`` tags), sorted by number."""
    require_repo(ws.root)
    tags = _round_tags(ws.root, kind)
    return [_round_info(ws, n, tags[n], created=False, kind=kind) for n in sorted(tags)]


def checkout_round(ws: Workspace, number: int, kind: RoundKind = LABELS) -> Path:
    """Restore ``data/labels/round_NNN/`` to exactly the files of its tag; returns it.

    Modified or deleted files are restored and extra files removed. If the local DVC
    cache lacks the data it is pulled from the workspace remote.
    """
    _check_number(number)
    root = ws.root
    with versioning_lock(root):
        tags = _existing_round(root, number, kind)
        rel = kind.dir.format(number)
        dvc_file = f"{rel}.dvc"
        git(root, "checkout", tags[number], "--", dvc_file)
        if not dvc_ok(root, "checkout", "--force", dvc_file):
            # The local cache lacks (some of) the data: fetch it, then check out.
            dvc(root, "pull", "--force", "-r", REMOTE_NAME, dvc_file,
                hint=f"the DVC remote {ws.remote_url!r} must be reachable and hold the data "
                f"of round {number} (it is pushed when the round is committed)")
        return root / rel


# ---- internals --------------------------------------------------------------------------


def _check_number(number: int) -> None:
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise VersioningError(f"a round number is an int >= 0, got {number!r}")


def _round_tags(root: Path, kind: RoundKind = LABELS) -> dict[int, str]:
    """Round number -> tag name, for every tag of ``kind`` (``labels/rNNN``)."""
    out = git(root, "tag", "--list", kind.tag_glob())
    pattern = kind.tag_pattern()
    tags = {}
    for name in out.splitlines():
        match = pattern.match(name.strip())
        if match:
            tags[int(match.group(1))] = name.strip()
    return tags


def _existing_round(root: Path, number: int, kind: RoundKind) -> dict[int, str]:
    """The round tags of ``kind`` (caller holds the lock); round ``number`` must be one."""
    require_repo(root)
    tags = _round_tags(root, kind)
    if number not in tags:
        raise VersioningError(f"{kind.what} {number} does not exist in {root}; existing "
                              f"rounds: {_describe(tags)}")
    return tags


def _describe(tags: dict[int, str]) -> str:
    if not tags:
        return "none (the first round is 0)"
    return ", ".join(f"{n} ({tags[n]})" for n in sorted(tags))


def _round_info(ws: Workspace, number: int, tag: str, created: bool,
                kind: RoundKind = LABELS) -> RoundInfo:
    root = ws.root
    fields = git(root, "for-each-ref", "--format=%(*objectname) %(objectname) "
                 "%(creatordate:iso-strict)", f"refs/tags/{tag}").split()
    # Annotated tags: *objectname is the commit; lightweight tags: objectname is.
    commit, date = (fields[0], fields[2]) if len(fields) == 3 else (fields[0], fields[1])
    rel = kind.dir.format(number)
    dvc_text = git_try(root, "show", f"{tag}:{rel}.dvc")
    if dvc_text is None:
        raise VersioningError(f"tag {tag} in {root} has no {rel}.dvc: it is not a {kind.what}")
    out = (yaml.safe_load(dvc_text) or {}).get("outs") or [{}]
    metrics_rel = kind.metrics.format(number)
    metrics_text = git_try(root, "show", f"HEAD:{metrics_rel}")
    try:
        metrics = json.loads(metrics_text) if metrics_text is not None else None
    except json.JSONDecodeError as exc:
        raise VersioningError(
            f"{metrics_rel} at HEAD in {root} is not valid JSON ({exc}): "
            "fix it or record the round's metrics again"
        ) from exc
    return RoundInfo(
        number=number,
        tag=tag,
        path=root / rel,
        commit=commit,
        created=created,
        date=date,
        n_files=int(out[0].get("nfiles", 0)),
        size_bytes=int(out[0].get("size", 0)),
        metrics=metrics,
    )


def _remove_stale_temp_dirs(labels_dir: Path) -> None:
    """Temp folders left by a crashed writer (we hold the lock: none are in use)."""
    temp_files.sweep(labels_dir, recursive=False)


def _write_atomically(final: Path, number: int, write: Callable[[Path], None]) -> None:
    tmp = final.parent / temp_files.temp_name(f"round_{number:03d}")
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        if not tmp.is_dir():
            raise VersioningError(f"write() removed its output folder {tmp}: write into it")
        kill_point("round.staged")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
