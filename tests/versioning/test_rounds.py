"""Label rounds: commit, no-op re-commit, crash safety, checkout, metrics, concurrency."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from segloop.errors import VersioningError
from segloop.versioning import (
    ROUND_DIR,
    ROUND_TAG,
    checkout_round,
    commit_round,
    list_rounds,
    next_round_number,
    record_round_metrics,
)


class Writer:
    """A ``write`` callback that records its calls and writes seeded files."""

    def __init__(self, seed: int, n: int = 3) -> None:
        self.seed, self.n, self.calls = seed, n, 0

    def __call__(self, folder: Path) -> None:
        self.calls += 1
        rng = np.random.default_rng(self.seed)
        (folder / "masks").mkdir()
        for i in range(self.n):
            (folder / "masks" / f"m{i}.bin").write_bytes(rng.bytes(100 + 37 * i))
        (folder / "labels.json").write_text(json.dumps({"seed": self.seed}))


@pytest.fixture(scope="module")
def committed(shared_ws, tree_hashes):
    """A committed round: (number, sha256 of every file, total bytes)."""
    number = next_round_number(shared_ws)
    info = commit_round(shared_ws, number, Writer(seed=100, n=4))
    hashes = tree_hashes(info.path)
    return number, hashes, sum(p.stat().st_size for p in info.path.rglob("*") if p.is_file())


def _count(git, root: Path) -> int:
    return int(git(root, "rev-list", "--count", "HEAD"))


def test_commit_round_then_again_is_a_noop(shared_ws, git):
    root = shared_ws.root
    number = next_round_number(shared_ws)
    before = _count(git, root)
    write = Writer(seed=1)
    info = commit_round(shared_ws, number, write)
    assert write.calls == 1 and info.created
    assert info.tag == ROUND_TAG.format(number)
    assert info.path == root / ROUND_DIR.format(number) and info.path.is_dir()
    assert info.commit == git(root, "rev-parse", "HEAD") == git(root, "rev-parse",
                                                                 f"{info.tag}^{{commit}}")
    assert git(root, "cat-file", "-t", info.tag) == "tag"
    assert git(root, "log", "-1", "--format=%s") == f"labels: round {number:03d}"
    assert info.n_files == 4 and _count(git, root) == before + 1
    assert git(root, "status", "--porcelain") == ""
    assert next_round_number(shared_ws) == number + 1

    again = Writer(seed=2)
    info2 = commit_round(shared_ws, number, again, message="other message")
    assert again.calls == 0 and not info2.created
    assert info2.commit == info.commit and info2.n_files == info.n_files
    assert _count(git, root) == before + 1
    assert git(root, "tag", "--list", info.tag).splitlines() == [info.tag]


def test_write_that_raises_leaves_nothing_visible(shared_ws, git):
    root = shared_ws.root
    number = next_round_number(shared_ws)
    head = git(root, "rev-parse", "HEAD")

    def broken(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x" * 10)
        raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError, match="writer crashed"):
        commit_round(shared_ws, number, broken)
    labels = root / "data" / "labels"
    assert not (root / ROUND_DIR.format(number)).exists()
    assert not [p for p in labels.iterdir() if p.name.startswith(".round_")]
    assert git(root, "rev-parse", "HEAD") == head
    assert next_round_number(shared_ws) == number
    assert git(root, "status", "--porcelain") == ""


def test_crash_recovery_versions_an_untagged_round_dir(shared_ws, git, tree_hashes):
    root = shared_ws.root
    number = next_round_number(shared_ws)
    final = root / ROUND_DIR.format(number)
    final.mkdir(parents=True)
    Writer(seed=3, n=2)(final)
    stale = final.parent / f".round_{number:03d}.tmp-deadbeef"
    stale.mkdir()
    (stale / "junk").write_text("junk")
    expected = tree_hashes(final)

    write = Writer(seed=4)
    info = commit_round(shared_ws, number, write)
    assert write.calls == 0 and info.created and info.n_files == 3
    assert tree_hashes(final) == expected
    assert not stale.exists()
    assert git(root, "rev-parse", f"{info.tag}^{{commit}}") == info.commit


def test_rounds_are_append_only(shared_ws, committed):
    nxt = next_round_number(shared_ws)
    write = Writer(seed=5)
    with pytest.raises(VersioningError, match="append-only"):
        commit_round(shared_ws, nxt + 1, write)
    with pytest.raises(VersioningError, match="int >= 0"):
        commit_round(shared_ws, -1, write)
    assert write.calls == 0
    assert not (shared_ws.root / ROUND_DIR.format(nxt + 1)).exists()


def test_checkout_restores_exact_bytes(shared_ws, committed, git, tree_hashes):
    number, hashes, _ = committed
    folder = shared_ws.root / ROUND_DIR.format(number)
    (folder / "masks" / "m0.bin").unlink()
    (folder / "masks" / "m1.bin").write_bytes(b"tampered")
    (folder / "labels.json").unlink()
    (folder / "stray.txt").write_text("not part of the round")
    assert checkout_round(shared_ws, number) == folder
    assert tree_hashes(folder) == hashes
    assert git(shared_ws.root, "status", "--porcelain") == ""


def test_checkout_pulls_from_remote_when_cache_is_gone(shared_ws, committed, tree_hashes):
    number, hashes, _ = committed
    folder = shared_ws.root / ROUND_DIR.format(number)
    shutil.rmtree(shared_ws.root / ".dvc" / "cache")
    shutil.rmtree(folder)
    assert checkout_round(shared_ws, number) == folder
    assert tree_hashes(folder) == hashes


def test_checkout_unknown_round_lists_existing(shared_ws, committed):
    with pytest.raises(VersioningError, match=r"round 999 does not exist.*labels/r"):
        checkout_round(shared_ws, 999)


def test_list_rounds_with_metrics(shared_ws, committed, git):
    number, hashes, size = committed
    root = shared_ws.root
    record_round_metrics(shared_ws, number, {"miou": np.float32(0.5), "n": 3})
    head = git(root, "rev-parse", "HEAD")
    record_round_metrics(shared_ws, number, {"n": 3, "miou": 0.5})  # same: no commit
    assert git(root, "rev-parse", "HEAD") == head
    assert git(root, "status", "--porcelain") == ""
    with pytest.raises(VersioningError, match="not committed"):
        record_round_metrics(shared_ws, 999, {"miou": 0.1})

    rounds = list_rounds(shared_ws)
    numbers = [r.number for r in rounds]
    assert numbers == sorted(numbers) == list(range(len(rounds)))
    info = rounds[number]
    assert info.metrics == {"miou": 0.5, "n": 3}
    assert info.n_files == len(hashes) and info.size_bytes == size
    assert info.commit == git(root, "rev-parse", f"{info.tag}^{{commit}}")
    assert datetime.fromisoformat(info.date).tzinfo is not None
    assert all(r.metrics is None for r in rounds if r.number != number)


CONCURRENT = """
import sys, time
from pathlib import Path
from segloop.versioning import Workspace, commit_round, next_round_number, versioning_lock

ws = Workspace(Path(sys.argv[1]), sys.argv[2])

def write(folder):
    time.sleep(0.3)
    (folder / "who.txt").write_text(sys.argv[3])

with versioning_lock(ws.root):
    info = commit_round(ws, next_round_number(ws), write)
print(info.number)
"""


def test_concurrent_processes_both_commit(shared_ws, git):
    root = shared_ws.root
    first = next_round_number(shared_ws)
    procs = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT, str(root), shared_ws.remote_url,
                          name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert sorted(int(out) for out, _ in outputs) == [first, first + 1]
    assert next_round_number(shared_ws) == first + 2
    for n in (first, first + 1):
        assert git(root, "tag", "--list", ROUND_TAG.format(n)) == ROUND_TAG.format(n)
    subprocess.run(["git", "fsck", "--strict"], cwd=root, check=True, capture_output=True)
    assert git(root, "status", "--porcelain") == ""
    targets = [ROUND_DIR.format(n) + ".dvc" for n in (first, first + 1)]
    dvc_status = subprocess.run([sys.executable, "-m", "dvc", "status", *targets], cwd=root,
                                capture_output=True, text=True, check=True).stdout
    assert "up to date" in dvc_status


def test_seed_rounds_are_a_separate_append_only_family(tmp_path, git, tree_hashes):
    from segloop.versioning import init_workspace, seed_rounds

    ws = init_workspace(tmp_path / "ws", tmp_path / "remote")
    usam, clip = seed_rounds("data/pseudolabels/usam", "usam"), \
        seed_rounds("data/pseudolabels/sam_clip", "sam_clip")
    commit_round(ws, 0, Writer(seed=5))  # a label round does not count as a seed round
    assert next_round_number(ws, usam) == 0
    info = commit_round(ws, 0, Writer(seed=6), message="seeds", kind=usam)
    assert info.tag == "pseudolabels/usam/r000"
    assert info.path == ws.root / "data/pseudolabels/usam/round_000"
    assert (ws.root / "data/pseudolabels/usam/round_000.dvc").is_file()
    assert next_round_number(ws, usam) == 1 and next_round_number(ws, clip) == 0
    assert next_round_number(ws) == 1
    assert [r.tag for r in list_rounds(ws, usam)] == ["pseudolabels/usam/r000"]
    assert [r.tag for r in list_rounds(ws)] == [ROUND_TAG.format(0)]
    with pytest.raises(VersioningError, match="usam pseudo-label round 2 .*next round is 1"):
        commit_round(ws, 2, Writer(seed=7), kind=usam)
    record_round_metrics(ws, 0, {"miou": 0.5}, kind=usam)
    assert json.loads((ws.root / "metrics/pseudolabels/usam/round_000.json").read_text()) == \
        {"miou": 0.5}
    assert list_rounds(ws, usam)[0].metrics == {"miou": 0.5}
    hashes = tree_hashes(info.path)
    shutil.rmtree(info.path)
    assert checkout_round(ws, 0, usam) == info.path and tree_hashes(info.path) == hashes


def test_retract_the_latest_round_keeps_history(tmp_path: Path, git, tree_hashes):  # type: ignore[no-untyped-def]
    from segloop.versioning import init_workspace, retract_round

    ws = init_workspace(tmp_path / "ws", tmp_path / "remote")
    root = ws.root
    commit_round(ws, 0, Writer(seed=1))
    first = commit_round(ws, 1, Writer(seed=2))
    record_round_metrics(ws, 1, {"miou": 0.5})
    wrong = tree_hashes(first.path)
    with pytest.raises(VersioningError, match="only the latest label round"):
        retract_round(ws, 0)
    commits = _count(git, root)
    kept = retract_round(ws, 1)
    assert kept == "labels/r001-retracted-1"
    assert _count(git, root) == commits + 1  # a new commit, nothing rewritten
    assert [r.number for r in list_rounds(ws)] == [0] and next_round_number(ws) == 1
    assert not first.path.exists() and not (root / "metrics/rounds/round_001.json").exists()
    assert git(root, "status", "--porcelain") == ""
    assert git(root, "rev-parse", f"{kept}^{{commit}}") == first.commit
    # the round is made again under its number; a second retraction keeps both
    again = commit_round(ws, 1, Writer(seed=3))
    assert again.tag == "labels/r001" and tree_hashes(again.path) != wrong
    assert retract_round(ws, 1) == "labels/r001-retracted-2"
    # the retracted data stays restorable from its tag
    git(root, "checkout", "-q", kept, "--", "data/labels/round_001.dvc")
    subprocess.run([sys.executable, "-m", "dvc", "checkout", "data/labels/round_001.dvc"],
                   cwd=root, check=True, capture_output=True)
    assert tree_hashes(root / "data/labels/round_001") == wrong
