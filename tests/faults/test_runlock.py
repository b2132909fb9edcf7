"""Output locks between real processes: the second run is refused and told who holds it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from segloop.errors import BusyError
from segloop.runlock import LOCK_DIR_ENV, canonical, lock_path, output_lock

HOLD = """
import sys, time
from segloop.runlock import output_lock
with output_lock(sys.argv[1], "embed"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))


def _holder(target: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_process_is_refused_and_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "data" / "emb"
    proc = _holder(out)
    try:
        with pytest.raises(BusyError, match=rf"being written by the embed run of pid {proc.pid}"):
            with output_lock(out, "embed"):
                pass
        # another spelling of the same folder is the same output; another folder is free
        with pytest.raises(BusyError):
            with output_lock(tmp_path / "data" / "x" / ".." / "emb", "synthesize"):
                pass
        with output_lock(tmp_path / "data" / "other", "embed"):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # SIGKILL left the lock file but not the lock
    assert lock_path(out).exists()
    with output_lock(out, "embed"):
        pass


def test_reentrant_within_a_process_and_released_after(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with output_lock(out, "usam"):
        with output_lock(str(out), "embed"):
            pass
        # still held by this process after the inner block
        code = ("import sys\nfrom segloop.runlock import output_lock\n"
                "from segloop.errors import BusyError\n"
                "try:\n    output_lock(sys.argv[1], 'x').__enter__()\n"
                "except BusyError:\n    sys.exit(7)\n")
        assert subprocess.run([sys.executable, "-c", code, str(out)],
                              env=os.environ.copy(), timeout=60).returncode == 7
    with output_lock(out, "embed"):  # released: taken again without a BusyError
        pass


def test_urls_are_kept_as_given_and_paths_resolved(tmp_path: Path) -> None:
    assert canonical("s3://bucket/ds/") == "s3://bucket/ds"
    assert canonical(f"file://{tmp_path}/a/../b") == str(tmp_path / "b")
    assert lock_path("s3://bucket/ds") != lock_path("s3://bucket/ds2")
