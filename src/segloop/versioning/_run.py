"""Run git and DVC as subprocesses inside one workspace root, and nowhere else.

git comes from PATH; DVC is always ``python -m dvc`` with this interpreter, so it is the
DVC installed next to segloop. Every command runs with ``cwd=root``, no stdin, and an
environment that cannot point git at another repository (``GIT_DIR`` and friends are
dropped, ``GIT_CEILING_DIRECTORIES`` stops discovery at ``root``). A failing command
raises :class:`~segloop.errors.VersioningError` with the command line, the exit code,
the last lines of its output and a hint.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from segloop.errors import VersioningError

#: Lines of stderr quoted in a VersioningError.
STDERR_TAIL = 15

#: Environment variables that could make git operate on a repository other than root.
_GIT_LOCATION_VARS = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
        "GIT_CEILING_DIRECTORIES",
        "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    }
)

_GIT_HINT = "check that git works in {root} and that the repository is not in a broken state"
_DVC_HINT = (
    "run the same command in {root} to see its full output (add -v for details); "
    "`python -m dvc doctor` shows the DVC setup"
)


def subprocess_env(root: Path) -> dict[str, str]:
    """The environment for git/DVC in ``root``: no analytics, no repo redirection."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    if root.parent != root:
        env["GIT_CEILING_DIRECTORIES"] = str(root.parent)
    return env


def _tail(text: str, n: int = STDERR_TAIL) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join("    " + line for line in lines[-n:])


def run(
    cmd: list[str], root: Path, *, hint: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in ``root``; raise VersioningError if it fails and ``check`` is set."""
    shown = shlex.join(cmd)
    is_dvc = cmd[:3] == [sys.executable, "-m", "dvc"]
    try:
        proc = subprocess.run(
            cmd,
            cwd=root,
            env=subprocess_env(root),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise VersioningError(
            f"cannot run `{shown}` in {root}: {exc}. Install {cmd[0]!r} (git must be on PATH; "
            "DVC comes with segloop's dependencies: pip install 'dvc>=3.50,<4')."
        ) from exc
    if check and proc.returncode != 0:
        output = _tail(proc.stderr) or _tail(proc.stdout) or "    (no output)"
        default = _DVC_HINT if is_dvc else _GIT_HINT
        raise VersioningError(
            f"`{shown}` failed with exit code {proc.returncode} in {root}:\n{output}\n"
            f"Hint: {(hint or default).format(root=root)}"
        )
    return proc


def require_repo(root: Path) -> None:
    """Refuse to run in a folder that is not itself a git repository (no discovery)."""
    if not (root / ".git").exists():
        raise VersioningError(
            f"{root} is not a segloop workspace (no {root / '.git'}): "
            "call segloop.versioning.init_workspace(root, remote_url) first."
        )


def git(root: Path, *args: str, hint: str | None = None, repo: bool = True) -> str:
    """Run ``git *args`` in ``root`` and return its stripped stdout."""
    if repo:
        require_repo(root)
    return run(["git", *args], root, hint=hint).stdout.strip()


def git_try(root: Path, *args: str) -> str | None:
    """Run ``git *args``; its stripped stdout, or None if it exits non-zero."""
    require_repo(root)
    proc = run(["git", *args], root, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_ok(root: Path, *args: str) -> bool:
    """Whether ``git *args`` exits with 0 (for predicates such as ``diff --quiet``)."""
    return git_try(root, *args) is not None


def dvc(root: Path, *args: str, hint: str | None = None) -> str:
    """Run ``python -m dvc *args`` in ``root`` and return its stdout."""
    require_repo(root)
    return run([sys.executable, "-m", "dvc", *args], root, hint=hint).stdout


def dvc_ok(root: Path, *args: str) -> bool:
    """Whether ``python -m dvc *args`` succeeds."""
    require_repo(root)
    return run([sys.executable, "-m", "dvc", *args], root, check=False).returncode == 0
