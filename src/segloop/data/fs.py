"""fsspec helpers: every dataset and table is addressed by a URL or a local path.

Local paths, ``file://``, ``memory://`` (tests) and any protocol a user installs
(``s3://`` with s3fs, ``gs://`` with gcsfs, ...) go through the same calls.
"""

from __future__ import annotations

import posixpath
from typing import Any

import fsspec
from fsspec import AbstractFileSystem


def url_to_fs(url: str, **storage_options: Any) -> tuple[AbstractFileSystem, str]:
    """Return the filesystem serving ``url`` and the protocol-less path inside it."""
    fs, path = fsspec.core.url_to_fs(str(url), **storage_options)
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
