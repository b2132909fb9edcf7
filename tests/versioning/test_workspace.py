"""init_workspace, version_path and versioning_lock against real git and DVC."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from segloop.errors import VersioningError
from segloop.versioning import (
    LOCK_NAME,
    Workspace,
    init_workspace,
    version_path,
    versioning_lock,
)
from segloop.versioning.commands import dvc


@pytest.fixture
def no_git_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate CI: no global/system git config, no identity in the environment."""
    empty = tmp_path / "empty.gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)


def test_init_inside_parent_repo_is_idempotent(tmp_path, git, no_git_identity):
    parent = tmp_path / "parent"
    parent.mkdir()
    git(parent, "init", "-q")
    (parent / "README").write_text("parent\n")
    git(parent, "add", "README")
    git(parent, "-c", "user.name=p", "-c", "user.email=p@x", "commit", "-q", "-m", "parent")
    parent_head = git(parent, "rev-parse", "HEAD")

    root = parent / "sub" / "ws"
    ws = init_workspace(root, tmp_path / "remote")
    assert ws == Workspace(root.resolve(), str((tmp_path / "remote").resolve()))
    assert (root / ".git").is_dir() and (root / ".dvc").is_dir()
    assert (tmp_path / "remote").is_dir()
    assert git(root, "rev-parse", "--show-toplevel") == str(root.resolve())
    assert git(root, "branch", "--show-current") == "main"
    assert git(root, "rev-list", "--count", "HEAD") == "1"
    assert git(root, "config", "--local", "user.email") == "segloop@localhost"
    assert LOCK_NAME in (root / ".gitignore").read_text().split()
    config = (root / ".dvc" / "config").read_text()
    assert "analytics = false" in config and "remote = segloop" in config
    assert str((tmp_path / "remote").resolve()) in config
    assert git(root, "status", "--porcelain") == ""

    # The parent repository is untouched: same HEAD, nothing staged, no identity added.
    assert git(parent, "rev-parse", "HEAD") == parent_head
    assert git(parent, "diff", "--cached", "--name-only") == ""
    assert git(parent, "config", "--local", "user.email", check=False) == ""

    # Idempotent: no new commit, nothing dirty.
    head = git(root, "rev-parse", "HEAD")
    assert init_workspace(root, tmp_path / "remote") == ws
    assert git(root, "rev-parse", "HEAD") == head
    assert git(root, "status", "--porcelain") == ""

    # A new remote URL is written to .dvc/config and committed.
    ws2 = init_workspace(str(root), str(tmp_path / "remote2"))
    assert ws2.remote_url == str((tmp_path / "remote2").resolve())
    assert ws2.remote_url in (root / ".dvc" / "config").read_text()
    assert git(root, "rev-list", "--count", "HEAD") == "2"
    assert git(root, "status", "--porcelain") == ""


def test_version_path_is_idempotent(shared_ws, git):
    root = shared_ws.root
    data = root / "data" / "raw"
    data.mkdir(parents=True)
    (data / "x.bin").write_bytes(bytes(range(256)))
    (data / "y.txt").write_text("y\n")
    commits = int(git(root, "rev-list", "--count", "HEAD"))

    sha = version_path(shared_ws, "data/raw", "data: raw v1", tag="data/raw-v1")
    assert sha == git(root, "rev-parse", "HEAD")
    assert int(git(root, "rev-list", "--count", "HEAD")) == commits + 1
    assert git(root, "rev-parse", "data/raw-v1^{commit}") == sha
    assert git(root, "cat-file", "-t", "data/raw-v1") == "tag"  # annotated
    assert any(p.is_file() for p in Path(shared_ws.remote_url).rglob("*"))  # pushed
    assert git(root, "status", "--porcelain") == ""

    # Unchanged: same commit, no new commit, same tag accepted.
    assert version_path(shared_ws, data, "data: raw v1 again", tag="data/raw-v1") == sha
    assert int(git(root, "rev-list", "--count", "HEAD")) == commits + 1

    # Changed: a new commit; reusing the old tag for different data is refused.
    (data / "y.txt").write_text("y2\n")
    sha2 = version_path(shared_ws, "data/raw", "data: raw v2", push=False)
    assert sha2 != sha
    with pytest.raises(VersioningError, match="already exists"):
        version_path(shared_ws, "data/raw", "data: raw v2", tag="data/raw-v1")
    assert git(root, "rev-parse", "data/raw-v1^{commit}") == sha


def test_temporary_files_of_killed_writers_are_never_versioned(tmp_path, git):
    root = tmp_path / "ws"
    ws = init_workspace(root, tmp_path / "remote")
    # a workspace made before the patterns existed gets them on its next init
    (root / ".dvcignore").write_text("# DVC's default\n")
    git(root, "commit", "-qam", "old .dvcignore")
    init_workspace(root, tmp_path / "remote")
    lines = (root / ".dvcignore").read_text().splitlines()
    assert {".*.tmp*", ".*.partial-*"} <= set(lines) and lines[0] == "# DVC's default"
    assert git(root, "status", "--porcelain") == ""
    data = root / "data" / "ds"
    (data / "labels").mkdir(parents=True)
    (data / "a.png").write_bytes(b"a")
    leftovers = [data / ".manifest.parquet.tmp-0123abcd", data / "labels" / ".b.png.tmp",
                 data / ".c.png.partial-9f8e", data / "labels" / ".round_001.tmp-77aa" / "x"]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    version_path(ws, "data/ds", "data: ds")
    outs = yaml.safe_load((root / "data/ds.dvc").read_text())["outs"]
    assert outs[0]["nfiles"] == 1, outs
    for p in leftovers:
        p.unlink()
    assert json.loads(dvc(root, "status", "--json", "data/ds.dvc")) == {}


def test_version_path_rejects_paths_outside_or_missing(shared_ws, tmp_path):
    with pytest.raises(VersioningError, match="outside the workspace"):
        version_path(shared_ws, tmp_path, "nope")
    with pytest.raises(VersioningError, match="inside"):
        version_path(shared_ws, "../elsewhere", "nope")
    with pytest.raises(VersioningError, match="does not exist"):
        version_path(shared_ws, "data/missing", "nope")


def test_operations_refuse_a_folder_without_its_own_repo(tmp_path):
    (tmp_path / "plain" / "d").mkdir(parents=True)
    ws = Workspace(tmp_path / "plain", str(tmp_path / "remote"))
    with pytest.raises(VersioningError, match="init_workspace"):
        version_path(ws, "d", "nope")


def test_failing_command_reports_command_exit_code_and_hint(shared_ws):
    from segloop.versioning.commands import git as run_git

    with pytest.raises(VersioningError) as info:
        run_git(shared_ws.root, "rev-parse", "no-such-ref", hint="HINT-TEXT")
    text = str(info.value)
    assert "git rev-parse no-such-ref" in text and "exit code 128" in text
    assert "no-such-ref" in text.split("exit code", 1)[1] and "Hint: HINT-TEXT" in text


def test_lock_is_reentrant_and_exclusive(tmp_path):
    root = tmp_path / "locked"
    with versioning_lock(root) as path:
        assert path == root.resolve() / LOCK_NAME
        with versioning_lock(root, timeout=0.1):  # same thread: re-entrant
            pass

        # Another thread of this process waits, then times out.
        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                with versioning_lock(root, timeout=0.2):
                    pass
            except VersioningError as exc:
                errors.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(errors) == 1 and str(path) in str(errors[0])
        assert "another segloop flow" in str(errors[0])

        # Another process times out too.
        code = (
            "import sys\n"
            "from segloop.errors import VersioningError\n"
            "from segloop.versioning import versioning_lock\n"
            "try:\n"
            "    with versioning_lock(sys.argv[1], timeout=0.2):\n"
            "        sys.exit(3)\n"
            "except VersioningError as exc:\n"
            "    print(exc)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code, str(root)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "another segloop flow holds it" in proc.stdout

    # Released: the other process gets it now.
    proc = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                          timeout=60)
    assert proc.returncode == 3


def test_ignore_in_workspace_commits_once(tmp_path: Path) -> None:
    from segloop.versioning import ignore_in_workspace, init_workspace

    ws = init_workspace(tmp_path / "ws", tmp_path / "remote")
    assert ignore_in_workspace(ws, ["/work/"]) is True
    assert "/work/" in (ws.root / ".gitignore").read_text().splitlines()
    assert ignore_in_workspace(ws, ["/work/"]) is False
    status = subprocess.run(["git", "status", "--porcelain"], cwd=ws.root, capture_output=True,
                            text=True, check=True).stdout
    assert status == ""
