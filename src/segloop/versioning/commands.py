"""Run git and DVC as subprocesses inside one workspace root, and nowhere else.

git comes from PATH; DVC is always ``python -m dvc`` with this interpreter, so it is the
DVC installed next to segloop. Every command runs with ``cwd=root``, no stdin, and an
environment that cannot point git at another repository (``GIT_DIR`` and friends are
dropped, ``GIT_CEILING_DIRECTORIES`` stops discovery at ``root``). A failing command
raises :class:`~segloop.errors.VersioningError` with the command line, the exit code,
the last lines of its output and a hint.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from segloop.errors import VersioningError

#: Lines of stderr quoted in a VersioningError.
STDERR_TAIL = 15

#: Seconds a git / DVC command may run before it is stopped (environment overrides).
TIMEOUT_ENV = {"git": "SEGLOOP_GIT_TIMEOUT", "dvc": "SEGLOOP_DVC_TIMEOUT"}
DEFAULT_TIMEOUT = {"git": 300.0, "dvc": 3600.0}

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


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URL masked."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


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


def timeout_for(tool: str) -> float:
    """Seconds ``tool`` ("git" or "dvc") may run: ``$SEGLOOP_GIT_TIMEOUT`` /
    ``$SEGLOOP_DVC_TIMEOUT``, else 300 s for git and 3600 s for DVC (pushes can be big)."""
    raw = os.environ.get(TIMEOUT_ENV[tool])
    if raw is None:
        return DEFAULT_TIMEOUT[tool]
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise VersioningError(f"{TIMEOUT_ENV[tool]}={raw!r} is not a number of seconds > 0; "
                              f"unset it for the default ({DEFAULT_TIMEOUT[tool]:g} s)")
    return value


def _communicate(cmd: list[str], root: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in its own process group; on timeout or interrupt, kill the group (DVC
    starts helpers of its own) and re-raise."""
    proc = subprocess.Popen(cmd, cwd=root, env=subprocess_env(root), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run(
    cmd: list[str], root: Path, *, hint: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in ``root``; raise VersioningError if it fails and ``check`` is set, or
    if it runs past :func:`timeout_for` its tool (it is stopped then)."""
    shown = redact(shlex.join(["***" if i and cmd[i - 1] == "password" else a
                               for i, a in enumerate(cmd)]))
    is_dvc = cmd[:3] == [sys.executable, "-m", "dvc"]
    tool = "dvc" if is_dvc else "git"
    limit = timeout_for(tool)
    try:
        proc = _communicate(cmd, root, limit)
    except subprocess.TimeoutExpired:
        raise VersioningError(
            f"`{shown}` did not finish within {limit:g} s in {root} and was stopped (a hung "
            f"network remote or a very large transfer?). Nothing was half-committed: run the "
            f"same flow again to retry. If the transfer is just slow, raise the limit with "
            f"{TIMEOUT_ENV[tool]}=<seconds>.") from None
    except FileNotFoundError as exc:
        raise VersioningError(
            f"cannot run `{shown}` in {root}: {exc}. Install {cmd[0]!r} (git must be on PATH; "
            "DVC comes with segloop's dependencies: pip install 'dvc>=3.50,<4')."
        ) from exc
    if check and proc.returncode != 0:
        output = redact(_tail(proc.stderr) or _tail(proc.stdout) or "    (no output)")
        default = _DVC_HINT if is_dvc else _GIT_HINT
        raise VersioningError(
            f"`{shown}` failed with exit code {proc.returncode} in {root}:\n{output}\n"
            f"Hint: {redact((hint or default).format(root=root))}"
        )
    return proc


def require_repo(root: Path) -> None:
    """Refuse to run in a folder that is not itself a git repository (no discovery)."""
    if not (root / ".git").exists():
        raise VersioningError(
            f"{root} is not a segloop workspace (no {root / '.git'}): "
            "call segloop.versioning.init_workspace(root, remote_url) first."
        )


def _open_by_a_process(path: Path) -> bool | None:
    """Whether any process has ``path`` open (Linux ``/proc``); None where unknowable."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    target = str(path)
    for fd_dir in proc.glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                if os.readlink(fd) == target:
                    return True
        except OSError:  # the process ended, or is not ours to look at
            continue
    return False


def recover_index_lock(root: Path, stale_after: float = 600.0) -> bool:
    """Remove ``.git/index.lock`` left by a killed git, if it is stale; returns whether it did.

    Only under segloop's workspace lock (no other segloop run is using git here), and only
    if no process has the file open (git keeps it open while it works; where ``/proc`` is
    not available: if it is older than ``stale_after`` seconds)."""
    from segloop.versioning.workspace import holds_lock

    lock = root / ".git" / "index.lock"
    if not lock.exists() or not holds_lock(root):
        return False
    try:
        busy = _open_by_a_process(lock)
        if busy is None:
            busy = time.time() - lock.stat().st_mtime < stale_after
        if busy:
            return False
        lock.unlink()
    except FileNotFoundError:
        return False
    logging.getLogger("segloop").warning(
        "removed %s: a git command killed earlier left it (no process holds it)", lock)
    return True


def _git(root: Path, args: tuple[str, ...], hint: str | None,
         check: bool) -> subprocess.CompletedProcess[str]:
    recover_index_lock(root)
    try:
        proc = run(["git", *args], root, hint=hint, check=check)
    except VersioningError as exc:
        if "index.lock" not in str(exc) or not recover_index_lock(root):
            raise
        return run(["git", *args], root, hint=hint, check=check)
    if proc.returncode != 0 and "index.lock" in proc.stderr and recover_index_lock(root):
        return run(["git", *args], root, hint=hint, check=check)
    return proc


def git(root: Path, *args: str, hint: str | None = None, repo: bool = True) -> str:
    """Run ``git *args`` in ``root`` and return its stripped stdout."""
    if repo:
        require_repo(root)
        return _git(root, args, hint, check=True).stdout.strip()
    return run(["git", *args], root, hint=hint).stdout.strip()


def git_try(root: Path, *args: str) -> str | None:
    """Run ``git *args``; its stripped stdout, or None if it exits non-zero."""
    require_repo(root)
    proc = _git(root, args, None, check=False)
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
