"""Fixtures for the versioning tests: real git and DVC in temporary folders."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from segloop.versioning import Workspace, init_workspace


def _git(root: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {root}: {proc.stderr}")
    return proc.stdout.strip()


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def git() -> Callable[..., str]:
    """``git(root, *args)``: stdout of a git command in ``root`` (asserts success)."""
    return _git


@pytest.fixture(scope="session")
def tree_hashes() -> Callable[[Path], dict[str, str]]:
    """``tree_hashes(folder)``: relative path -> sha256 of every file below ``folder``."""
    return _tree_hashes


@pytest.fixture(scope="module")
def shared_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One initialised workspace (with a local remote) per test module."""
    base = tmp_path_factory.mktemp("versioning")
    return init_workspace(base / "ws", base / "remote")
