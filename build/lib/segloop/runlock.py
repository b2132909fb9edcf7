"""One writer per output: a run holds its output's lock from start to end, a second run on
the same output is refused at once with a message naming the one that holds it.

Without it two runs on one output would both do every piece of work, write the same
shard or batch names, and sweep each other's live temporary files.

The locks are ``flock`` locks on files in one folder per machine and user
(``$SEGLOOP_LOCK_DIR``, default ``~/.cache/segloop/locks``), one file per output, named by
a hash of the output's resolved path or URL; nothing is written inside the data. The OS
releases a lock the moment its holder exits, even when it is killed, so a lock is never
stale. It protects runs on one machine; two machines writing one bucket are not covered.
Within one process the lock is re-entrant (a flow that calls another on the same output).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from segloop.errors import BusyError

LOCK_DIR_ENV = "SEGLOOP_LOCK_DIR"

_guard = threading.Lock()
_held: dict[str, list[int]] = {}  # lock path -> [fd, depth]


def lock_dir() -> Path:
    """The folder that holds the output locks (created on first use)."""
    env = os.environ.get(LOCK_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "segloop" / "locks"


def canonical(target: str | os.PathLike[str]) -> str:
    """The output's identity: an absolute, resolved local path, or the URL as given."""
    text = os.fspath(target)
    if "://" in text and not text.startswith("file://"):
        return text.rstrip("/")
    local = text.removeprefix("file://")
    return str(Path(local).expanduser().resolve())


def lock_path(target: str | os.PathLike[str]) -> Path:
    """Path of the lock file of ``target``."""
    digest = hashlib.sha256(canonical(target).encode()).hexdigest()[:24]
    return lock_dir() / f"{digest}.lock"


def holder(target: str | os.PathLike[str]) -> dict[str, object] | None:
    """What the current (or last) holder of ``target``'s lock wrote about itself."""
    try:
        text = lock_path(target).read_text(encoding="utf-8")
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def describe(info: dict[str, object] | None) -> str:
    """Human words for a holder record."""
    if not info:
        return "another segloop run (it has not said which yet)"
    return (f"the {info.get('flow', '?')} run of pid {info.get('pid', '?')} on "
            f"{info.get('host', '?')}, started {info.get('started', '?')}")


@contextmanager
def output_lock(target: str | os.PathLike[str], flow: str) -> Iterator[None]:
    """Hold ``target``'s lock for the block, or raise :class:`BusyError` at once if another
    process holds it. ``flow`` names this run in the message a refused run shows."""
    path = lock_path(target)
    key = str(path)
    with _guard:
        if key in _held:
            _held[key][1] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                _held[key][1] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BusyError(
            f"{canonical(target)} is being written by {describe(holder(target))}. Two runs "
            "on one output would redo each other's work and overwrite each other's files: "
            "wait for that run to finish (or stop it), then run again. A rerun resumes "
            "where the other stopped.") from None
    except BaseException:
        os.close(fd)
        raise
    with _guard:
        _held[key] = [fd, 1]
    try:
        record = {"flow": flow, "pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.now(UTC).isoformat(timespec="seconds"),
                  "target": canonical(target)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        yield
    finally:
        with _guard:
            depth = _held[key][1] - 1
            if depth:
                _held[key][1] = depth
            else:
                del _held[key]
        if not depth:
            os.close(fd)  # releases the flock
