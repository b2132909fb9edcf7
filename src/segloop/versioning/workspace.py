"""A workspace: the git + DVC repository where datasets and label rounds are versioned.

It may be a team's own data repository, the project root, or (demo, tests) a separate
folder. segloop only ever touches the given root: a root inside another git repository
gets its own ``.git`` and the outer repository is left alone.

Every operation that changes the workspace runs under :func:`versioning_lock`, a file
lock on ``root/.segloop.lock`` that serialises segloop flows across processes.
"""

from __future__ import annotations

import logging
import os
import posixpath
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import filelock

from segloop.data import temp_files
from segloop.data.images import write_bytes_atomic
from segloop.errors import RemoteError, VersioningError
from segloop.faults import kill_point
from segloop.versioning.commands import dvc, git, git_ok, git_try, redact, require_repo
from segloop.versioning.lineage import lineage_file, write_record

LOCK_NAME = ".segloop.lock"
REMOTE_NAME = "segloop"
DEFAULT_BRANCH = "main"
CI_USER_NAME = "segloop"
CI_USER_EMAIL = "segloop@localhost"

_SETUP_FILES = (".gitignore", ".dvcignore", ".dvc/.gitignore", ".dvc/config")
_PUSH_HINT = (
    "check that the DVC remote {url!r} is reachable and writable; the commit is kept, "
    "so running the same call again retries the push"
)

# temporary names of segloop's writers (``.<name>.tmp-<hex>``, ``.round_003.tmp-<hex>``,
# ``.<name>.partial-<hex>``): a killed writer's leftover must never be versioned
DVCIGNORE_PATTERNS = temp_files.IGNORE_PATTERNS
_DVCIGNORE_HEADER = "# segloop: temporary files of interrupted writers"

log = logging.getLogger(__name__)
_locks: dict[Path, filelock.FileLock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class Workspace:
    """A versioning workspace: ``root`` (absolute) and the URL of its DVC remote."""

    root: Path
    remote_url: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())
        object.__setattr__(self, "remote_url", str(self.remote_url))


@contextmanager
def versioning_lock(root: str | Path, timeout: float = 600) -> Iterator[Path]:
    """Hold the workspace lock ``root/.segloop.lock``; yields the lock file's path.

    Re-entrant within a thread (one FileLock instance per path), exclusive across threads
    and processes. Raises VersioningError after ``timeout`` seconds.
    """
    root = Path(root).expanduser().resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VersioningError(f"cannot create the workspace folder {root}: {exc}") from exc
    path = root / LOCK_NAME
    with _locks_guard:
        lock = _locks.setdefault(path, filelock.FileLock(path))
    try:
        lock.acquire(timeout=timeout)
    except filelock.Timeout as exc:
        raise VersioningError(
            f"could not acquire the segloop lock {path} within {timeout:g} s: another segloop "
            f"flow holds it while it versions data or label rounds in {root}. Wait for it to "
            f"finish. The lock is an OS lock: it is released the moment its holder exits, "
            f"even when killed, so do not delete the file (that would let two flows in); "
            f"find the holder with `fuser {path}` or `lsof {path}` and stop it if it hangs."
        ) from exc
    try:
        yield path
    finally:
        lock.release()


def holds_lock(root: str | Path) -> bool:
    """Whether this process holds ``root``'s workspace lock."""
    path = Path(root).expanduser().resolve() / LOCK_NAME
    with _locks_guard:
        lock = _locks.get(path)
    return lock is not None and lock.is_locked


def init_workspace(root: str | Path, remote_url: str | os.PathLike[str]) -> Workspace:
    """Make ``root`` a git + DVC workspace whose default DVC remote is ``remote_url``.

    Idempotent. A remote without a URL scheme is a local folder: it is made absolute
    (relative to the current directory) and created. Setup files changed here
    (``.gitignore``, ``.dvc/config``, ...) are committed; nothing else is.
    """
    root = Path(root).expanduser().resolve()
    url = _normalise_remote(remote_url)
    with versioning_lock(root):
        if not (root / ".git").exists():
            git(root, "init", "-q", repo=False)
            git(root, "symbolic-ref", "HEAD", f"refs/heads/{DEFAULT_BRANCH}")
        ensure_identity(root)
        fresh_dvc = not (root / ".dvc").exists()
        if fresh_dvc:
            dvc(root, "init", "-q")
        _configure_dvc(root, url, {} if fresh_dvc else _dvc_project_config(root))
        _ensure_gitignore(root)
        _ensure_dvcignore(root)
        first = not has_commits(root)
        setup = [p for p in _SETUP_FILES if (root / p).exists()]
        message = "segloop: initialise workspace" if first else "segloop: configure workspace"
        commit_paths(root, setup, message)
    return Workspace(root, split_credentials(url)[0])


def version_path(
    ws: Workspace, rel_path: str, message: str, tag: str | None = None, push: bool = True,
    lineage: dict[str, Any] | None = None,
) -> str:
    """Version ``rel_path`` (file or folder under ``ws.root``) with DVC and git.

    ``dvc add``, commit of its ``.dvc`` file and the ``.gitignore`` next to it (only if
    something changed), ``dvc push`` of it, then the optional annotated ``tag``. Returns
    the commit sha of HEAD. Versioning an unchanged path again makes no new commit.
    ``lineage`` (:func:`segloop.versioning.lineage.make_record`) is written beside the
    ``.dvc`` file and committed with it when the path changed (or has no record yet).
    """
    root = ws.root
    with versioning_lock(root):
        require_repo(root)
        rel = _relative_path(root, rel_path)
        dvc(root, "add", rel, hint=f"check that {rel} is not tracked by git itself "
            "(`git rm -r --cached` it) and is not inside another DVC-tracked folder")
        kill_point("version.added")
        dvc_file = f"{rel}.dvc"
        paths = [dvc_file]
        if lineage is not None and (git_try(root, "status", "--porcelain", "--", dvc_file)
                                    or not (root / lineage_file(rel)).exists()):
            paths.append(write_record(root, rel, lineage))
        elif (root / lineage_file(rel)).exists():
            paths.append(lineage_file(rel))
        gitignore = posixpath.join(posixpath.dirname(rel), ".gitignore")
        if (root / gitignore).exists():
            paths.append(gitignore)
        if commit_paths(root, paths, message):
            log.info("versioned %s (%s)", rel, message)
        kill_point("version.committed")
        if push:
            push_path(ws, dvc_file)
            kill_point("version.pushed")
        if tag:
            _ensure_tag(root, tag, message, dvc_file)
        return head_commit(root)


# ---- git helpers shared with rounds.py (callers hold the lock) --------------------------


def ensure_identity(root: Path) -> None:
    """Set a repo-local git identity if none is configured (CI machines have none)."""
    for key, value in (("user.email", CI_USER_EMAIL), ("user.name", CI_USER_NAME)):
        if not git_try(root, "config", key):
            git(root, "config", "--local", key, value)


def has_commits(root: Path) -> bool:
    return git_ok(root, "rev-parse", "--verify", "--quiet", "HEAD")


def head_commit(root: Path) -> str:
    return git(root, "rev-parse", "HEAD")


def commit_paths(root: Path, paths: list[str], message: str) -> bool:
    """Stage and commit exactly ``paths`` (other staged changes stay staged).

    Returns whether a commit was made (False when the paths equal HEAD).
    """
    git(root, "add", "--", *paths)
    if has_commits(root) and git_ok(root, "diff", "--cached", "--quiet", "HEAD", "--", *paths):
        return False
    ensure_identity(root)
    git(root, "commit", "-q", "-m", message, "--", *paths,
        hint="a git hook may have refused the commit, or a path is ignored by .gitignore")
    return True


def tag_commit(root: Path, tag: str) -> str | None:
    """The commit a tag points to, or None if the tag does not exist."""
    return git_try(root, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")


def create_tag(root: Path, tag: str, message: str) -> None:
    """Create the annotated ``tag`` on HEAD."""
    ensure_identity(root)
    git(root, "tag", "-a", "-m", message, tag, "HEAD")


def push_path(ws: Workspace, dvc_file: str) -> None:
    """``dvc push`` one ``.dvc`` file to the workspace remote (:class:`RemoteError` if it
    fails: a retry may succeed)."""
    try:
        dvc(ws.root, "push", "-r", REMOTE_NAME, dvc_file,
            hint=_PUSH_HINT.format(url=redact(ws.remote_url)))
    except RemoteError:
        raise
    except VersioningError as exc:
        raise RemoteError(str(exc)) from None


# ---- internals --------------------------------------------------------------------------


def _ensure_tag(root: Path, tag: str, message: str, dvc_file: str) -> None:
    target = tag_commit(root, tag)
    if target is None:
        create_tag(root, tag, message)
    elif not git_ok(root, "diff", "--quiet", target, "HEAD", "--", dvc_file):
        raise VersioningError(
            f"tag {tag!r} already exists on commit {target[:12]} with a different {dvc_file}: "
            f"tags are never moved. Pick a new tag name (or, if the old tag was a mistake, "
            f"delete it with `git tag -d {tag}` in {root})."
        )


def _normalise_remote(remote_url: str | os.PathLike[str]) -> str:
    url = os.fspath(remote_url)
    if not url:
        raise VersioningError("remote_url is empty: give a folder or a DVC remote URL")
    if url.startswith("file://"):
        url = url[len("file://"):]
    elif "://" in url:
        return url
    path = Path(url).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VersioningError(f"cannot create the local DVC remote folder {path}: {exc}") from exc
    return str(path)


def _dvc_project_config(root: Path) -> dict[str, str]:
    out = dvc(root, "config", "--list", "--project")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def split_credentials(url: str) -> tuple[str, str | None]:
    """``scheme://user:password@host/...`` -> (``scheme://user@host/...``, password); other
    URLs and paths come back unchanged with None."""
    parts = urlsplit(url)
    if "://" not in url or parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if parts.username else "") + host + (
        f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), parts.password


def _configure_dvc(root: Path, url: str, config: dict[str, str]) -> None:
    """Point the ``segloop`` remote at ``url``. A password in the URL goes to
    ``.dvc/config.local`` (git-ignored by DVC), never to the committed ``.dvc/config``."""
    if config.get("core.analytics") != "false":
        dvc(root, "config", "core.analytics", "false")
    url, password = split_credentials(url)
    current = config.get(f"remote.{REMOTE_NAME}.url")
    if current is None:
        dvc(root, "remote", "add", "--default", REMOTE_NAME, url)
    else:
        if current != url:
            dvc(root, "remote", "modify", REMOTE_NAME, "url", url)
        if config.get("core.remote") != REMOTE_NAME:
            dvc(root, "remote", "default", REMOTE_NAME)
    if password is not None:
        dvc(root, "remote", "modify", "--local", REMOTE_NAME, "password", password)


def _ensure_gitignore(root: Path) -> None:
    path = root / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    entries = {line.strip().lstrip("/") for line in text.splitlines()}
    if LOCK_NAME not in entries:
        if text and not text.endswith("\n"):
            text += "\n"
        write_bytes_atomic(str(path), f"{text}{LOCK_NAME}\n".encode())


def _ensure_dvcignore(root: Path) -> None:
    path = root / ".dvcignore"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = {line.strip() for line in text.splitlines()}
    missing = [p for p in DVCIGNORE_PATTERNS if p not in lines]
    if missing:
        if text and not text.endswith("\n"):
            text += "\n"
        block = "\n".join(([_DVCIGNORE_HEADER] if _DVCIGNORE_HEADER not in lines else [])
                          + missing)
        write_bytes_atomic(str(path), f"{text}{block}\n".encode())


def _relative_path(root: Path, rel_path: str | os.PathLike[str]) -> str:
    path = Path(rel_path)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(root)
        except ValueError:
            raise VersioningError(f"{rel_path} is outside the workspace {root}") from None
    rel = posixpath.normpath(path.as_posix())
    if rel in (".", "") or rel.startswith("../") or rel == "..":
        raise VersioningError(f"{rel_path!r} must name a file or folder inside {root}")
    if not (root / rel).exists():
        raise VersioningError(f"{root / rel} does not exist: write the data before versioning it")
    return rel


def ignore_in_workspace(ws: Workspace, patterns: list[str]) -> bool:
    """Add ``patterns`` to the workspace's ``.gitignore`` (if missing) and commit it.

    For scratch folders a flow keeps in the workspace. Returns whether a commit was made.
    """
    with versioning_lock(ws.root):
        require_repo(ws.root)
        path = ws.root / ".gitignore"
        lines = path.read_text().splitlines() if path.exists() else []
        missing = [p for p in patterns if p not in lines]
        if not missing:
            return False
        write_bytes_atomic(str(path), ("\n".join([*lines, *missing]) + "\n").encode())
        return commit_paths(ws.root, [".gitignore"], f"segloop: ignore {', '.join(missing)}")
