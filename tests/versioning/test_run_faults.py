"""git/DVC subprocess faults: a hung command is stopped with a clear message, and the
index.lock a killed git leaves behind does not block the next run."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segloop.errors import VersioningError
from segloop.versioning import init_workspace, version_path, versioning_lock
from segloop.versioning.commands import git, recover_index_lock, timeout_for


def test_a_hung_git_is_stopped_with_its_helpers(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ws = init_workspace(tmp_path / "ws", tmp_path / "remote")
    fake = tmp_path / "bin"
    fake.mkdir()
    pidfile = tmp_path / "helper.pid"
    script = fake / "git"
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\nwait\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SEGLOOP_GIT_TIMEOUT", "1")
    with pytest.raises(VersioningError, match=r"did not finish within 1 s.*SEGLOOP_GIT_TIMEOUT"):
        git(ws.root, "status")
    helper = int(pidfile.read_text())
    # the helper the fake git started is gone too (killed with its process group; a
    # SIGKILLed process takes a moment to die, so wait for it, up to 10 s)
    deadline = time.monotonic() + 10
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(helper)


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def test_bad_timeout_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGLOOP_DVC_TIMEOUT", "soon")
    with pytest.raises(VersioningError, match="SEGLOOP_DVC_TIMEOUT='soon'"):
        timeout_for("dvc")
    monkeypatch.delenv("SEGLOOP_DVC_TIMEOUT")
    assert timeout_for("dvc") == 3600.0


def test_a_stale_index_lock_is_removed_under_the_workspace_lock(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws", tmp_path / "remote")
    lock = ws.root / ".git" / "index.lock"
    lock.write_text("")  # what a SIGKILLed `git commit` leaves
    assert not recover_index_lock(ws.root)  # not without segloop's lock
    (ws.root / "data").mkdir()
    (ws.root / "data" / "a.txt").write_text("a")
    version_path(ws, "data", "data: a")  # takes the lock, clears the leftover, commits
    assert not lock.exists()
    assert "data.dvc" in git(ws.root, "ls-files")


def test_an_index_lock_held_open_by_a_live_process_is_kept(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws", tmp_path / "remote")
    lock = ws.root / ".git" / "index.lock"
    lock.write_text("")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time\nf = open(sys.argv[1])\nprint('open', flush=True)"
                               "\ntime.sleep(300)", str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with versioning_lock(ws.root):
            assert not recover_index_lock(ws.root)
        assert lock.exists()
    finally:
        holder.kill()
        holder.wait()
