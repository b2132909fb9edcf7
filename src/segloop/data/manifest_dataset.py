"""A dataset listed by a segloop manifest table (``manifest`` or ``synthetic_manifest``).

``image_uri`` and ``label_uri`` are URLs or paths relative to the folder holding the
manifest file, so a dataset folder can be moved, copied or DVC-checked-out anywhere.
"""

from __future__ import annotations

import posixpath
from typing import Any

from segloop.data.base import DatasetBase, Sample
from segloop.data.classes import ClassSpec
from segloop.data.fs import to_url, url_to_fs
from segloop.data.parquet import read_table
from segloop.data.schemas import MANIFEST, MANIFEST_FILE, SYNTHETIC_MANIFEST, TABLE_KEY
from segloop.errors import DataError, StoreError


class ManifestDataset(DatasetBase):
    """The images of a ``manifest`` table, optionally only those of one ``split``.

    Args:
        root: the manifest file, or a folder holding ``manifest.parquet``.
        split: keep rows of this split; "" keeps all rows.
        external: allow rows pointing outside the manifest's folder (absolute paths,
            URLs); by default a row must name a path inside it (no ``..`` escapes), so a
            manifest from elsewhere cannot make segloop read arbitrary files.
    """

    def __init__(
        self,
        root: str,
        split: str = "",
        classes: ClassSpec | None = None,
        storage_options: dict[str, Any] | None = None,
        external: bool = False,
    ) -> None:
        self.root = root
        self.external = external
        self.split = split
        self.classes = classes
        self.storage_options = dict(storage_options or {})
        try:
            self._fs, path = url_to_fs(root, **self.storage_options)
        except (ValueError, ImportError) as err:
            raise DataError(f"cannot open manifest {root}: {err}; fix data.root") from err
        if self._fs.isdir(path):
            path = posixpath.join(path.rstrip("/"), MANIFEST_FILE)
        if not self._fs.isfile(path):
            raise DataError(
                f"manifest {to_url(self._fs, path)} does not exist; set data.root to a "
                f"manifest table or to the folder holding {MANIFEST_FILE}"
            )
        self._path = path
        self._base = posixpath.dirname(path)

    def rows(self) -> list[dict[str, Any]]:
        """The manifest rows of this split, sorted by name (see the ``manifest`` schema)."""
        url = to_url(self._fs, self._path)
        try:
            table = read_table(url, storage_options=self.storage_options)
        except StoreError as err:
            raise DataError(f"cannot read manifest: {err}") from err
        name = (table.schema.metadata or {}).get(TABLE_KEY, b"").decode()
        if name not in (MANIFEST, SYNTHETIC_MANIFEST):
            raise DataError(f"{url} holds table {name!r}, not a manifest; point data.root at "
                            f"a {MANIFEST!r} or {SYNTHETIC_MANIFEST!r} table")
        rows = table.to_pylist()
        if self.split:
            rows = [r for r in rows if r["split"] == self.split]
        if not rows:
            splits = sorted({r["split"] for r in table.to_pylist()})
            raise DataError(
                f"manifest {url} has no rows for split {self.split!r} (splits: {splits}); "
                "set data.split to one of them, or to '' for all rows"
            )
        names = [r["name"] for r in rows]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise DataError(f"manifest {url}: name {dup!r} appears twice; names must be unique")
        return sorted(rows, key=lambda r: r["name"])

    def sources(self) -> set[str]:
        """The ``source`` values ("real", "synthetic") of this split's rows."""
        return {r["source"] for r in self.rows()}

    def _collect(self) -> list[Sample]:
        return [
            Sample(r["name"], self._resolve(r["image_uri"], r["name"]),
                   self._resolve(r["label_uri"], r["name"]) if r["label_uri"] else None)
            for r in self.rows()
        ]

    def _resolve(self, uri: str, name: str) -> str:
        outside = "://" in uri or uri.startswith(("/", "\\")) or (len(uri) > 1 and uri[1] == ":")
        if outside:
            if not self.external:
                raise DataError(
                    f"manifest {to_url(self._fs, self._path)}: row {name!r} points at {uri!r}, "
                    "outside the manifest's folder; write paths relative to the folder, or "
                    "set data.manifest_external: true if you trust this manifest")
            return uri
        rel = posixpath.normpath(uri)
        if (rel == ".." or rel.startswith("../")) and not self.external:
            raise DataError(
                f"manifest {to_url(self._fs, self._path)}: row {name!r} points at {uri!r}, "
                "which leaves the manifest's folder ('..'); write paths inside it, or set "
                "data.manifest_external: true if you trust this manifest")
        return to_url(self._fs, posixpath.join(self._base, uri))
