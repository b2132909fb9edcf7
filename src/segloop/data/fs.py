"""fsspec helpers: every dataset and table is addressed by a URL or a local path.

Local paths, ``file://``, ``memory://`` (tests) and any protocol a user installs
(``s3://`` with s3fs, ``gs://`` with gcsfs, ...) go through the same calls.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any

import fsspec
from fsspec import AbstractFileSystem

from segloop.errors import DataError

_ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
#: storage_options keys that hold credentials: they must come from the environment.
SECRET_KEYS = ("secret", "password", "token", "key", "credential", "sas", "signature")


def is_env_ref(value: Any) -> bool:
    """Whether ``value`` is a ``${env:NAME}`` reference."""
    return isinstance(value, str) and _ENV_REF.match(value) is not None


def secret_keys(options: dict[str, Any], where: str = "data.storage_options") -> list[str]:
    """Keys of ``options`` (nested) that look like credentials and hold a literal value."""
    out = []
    for k, v in options.items():
        if isinstance(v, dict):
            out += secret_keys(v, f"{where}.{k}")
        elif (any(s in str(k).lower() for s in SECRET_KEYS) and v not in (None, "", False)
              and not is_env_ref(v) and not _harmless(v)):
            out.append(f"{where}.{k}")
    return out


def _harmless(value: Any) -> bool:
    """Values of credential-like keys that are not secrets: booleans, gcsfs's token modes,
    and paths to credential files (the file stays where it is)."""
    if isinstance(value, bool):
        return True
    if not isinstance(value, str):
        return False
    return (value in ("anon", "google_default", "cloud", "browser", "cache")
            or value.startswith(("/", "~", "./")) or value.endswith(".json"))


_ENV_IN_TEXT = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(text: str, what: str) -> str:
    """``text`` with every ``${env:NAME}`` replaced by that variable (a missing one is a
    :class:`DataError` naming ``what``)."""
    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in os.environ:
            raise DataError(f"{what} refers to ${{env:{m.group(1)}}}, but {m.group(1)} is not "
                            "set in this process's environment; export it")
        return os.environ[m.group(1)]
    return _ENV_IN_TEXT.sub(sub, text)


def resolve_env(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with every ``${env:NAME}`` value replaced by that environment variable
    (nested dicts too); a missing variable is a :class:`DataError` naming it."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        if isinstance(v, dict):
            out[k] = resolve_env(v)
        elif is_env_ref(v):
            name = _ENV_REF.match(v).group(1)  # type: ignore[union-attr]
            if name not in os.environ:
                raise DataError(f"storage option {k!r} refers to ${{env:{name}}}, but {name} "
                                "is not set in this process's environment; export it (or "
                                "give the worker that runs the flow this variable)")
            out[k] = os.environ[name]
        else:
            out[k] = v
    return out


def url_to_fs(url: str, **storage_options: Any) -> tuple[AbstractFileSystem, str]:
    """Return the filesystem serving ``url`` and the protocol-less path inside it;
    ``${env:NAME}`` option values are read from the environment here, at the last moment,
    so configs and Prefect's stored flow parameters never hold the secrets."""
    fs, path = fsspec.core.url_to_fs(str(url), **resolve_env(storage_options))
    return fs, path


def join(url: str, *parts: str) -> str:
    """Join path parts onto a URL or path with ``/``, keeping the protocol."""
    protocol, sep, rest = str(url).partition("://")
    if not sep:
        return posixpath.join(str(url), *parts)
    return f"{protocol}://{posixpath.join(rest, *parts)}"


def to_url(fs: AbstractFileSystem, path: str) -> str:
    """Turn a protocol-less path of ``fs`` back into a URL another call can open.

    Local paths stay plain paths, so messages and manifests read naturally.
    """
    if _is_local(fs):
        return path
    return fs.unstrip_protocol(path)


def _is_local(fs: AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def read_bytes(url: str, **storage_options: Any) -> bytes:
    """Read a whole file."""
    fs, path = url_to_fs(url, **storage_options)
    with fs.open(path, "rb") as fh:
        return fh.read()


def parquet_fingerprint(url: str, sub: str = "") -> list[tuple[str, int]]:
    """(relative path, size) of every Parquet file under ``url``/``sub`` (or of the file
    itself), sorted; [] when nothing is there. A cheap stand-in for hashing the data: a
    rewritten shard changes a size or a name."""
    fs, root = url_to_fs(join(url, sub) if sub else url)
    if not fs.exists(root):
        return []
    paths = [root] if fs.isfile(root) else sorted(
        p for p in fs.find(root) if p.endswith(".parquet")
        and not posixpath.basename(p).startswith("."))
    base = root.rstrip("/")
    return [(p[len(base):].lstrip("/") or posixpath.basename(p), int(fs.size(p)))
            for p in paths]
