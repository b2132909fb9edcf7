"""A folder's settings file: the values every row in it was made with.

Resumable outputs (SAM embeddings, synthetic datasets) must not mix rows made with other
settings; the first run records them, later runs check them.
"""

from __future__ import annotations

import json
from typing import Any

from segloop.data.fs import join, url_to_fs
from segloop.data.images import write_bytes_atomic
from segloop.errors import StoreError


def check_settings(out: str, settings: dict[str, Any], file_name: str, key: str) -> None:
    """Record ``settings`` in ``<out>/<file_name>``, or check they match the recorded ones.

    Raises :class:`StoreError` naming the differing keys when the folder was made with
    other settings; ``key`` is the config key of the folder, named in the fix.
    """
    fs, path = url_to_fs(join(out, file_name))
    if fs.exists(path):
        with fs.open(path, "rb") as fh:
            raw = fh.read()
        try:
            recorded = json.loads(raw)
            if not isinstance(recorded, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise StoreError(
                f"{join(out, file_name)} is not a valid settings file ({exc}): it records the "
                f"settings every file in {out} was made with. If you know them, restore it "
                f"(e.g. `dvc checkout`); otherwise set {key} to a new folder") from None
        diff = sorted(k for k in set(recorded) | set(settings)
                      if recorded.get(k) != settings.get(k))
        if diff:
            shown = ", ".join(f"{k}: {recorded.get(k)!r} there, {settings.get(k)!r} now"
                              for k in diff)
            raise StoreError(
                f"{out} was made with other settings ({shown}); set {key} to a new "
                "folder, or change the settings back to resume it"
            )
        return
    write_bytes_atomic(join(out, file_name),
                       (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())
