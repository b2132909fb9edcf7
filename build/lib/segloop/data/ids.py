"""Stable, content-derived image ids."""

from __future__ import annotations

import hashlib

ID_LENGTH = 16


def image_id(data: bytes) -> str:
    """Return the first 16 hex characters of the SHA-256 of a file's raw bytes.

    The id depends only on the bytes, so reruns, resumes and dedup agree on it.
    """
    return hashlib.sha256(data).hexdigest()[:ID_LENGTH]
