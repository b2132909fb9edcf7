"""JSON files segloop writes (summaries, metrics, settings): plain values, written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segloop.data.images import write_bytes_atomic


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for numpy scalars and arrays and paths."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):  # numpy arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serialisable")


def dumps(data: Any, *, sort_keys: bool = False) -> str:
    """Indented JSON text with a final newline (numpy values and paths allowed)."""
    return json.dumps(data, indent=2, sort_keys=sort_keys, default=json_default) + "\n"


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False) -> Path:
    """Write ``data`` as JSON to ``path`` (temporary name, then rename); returns the path."""
    write_bytes_atomic(str(path), dumps(data, sort_keys=sort_keys).encode())
    return Path(path)


def read_json(path: str | Path, fix: str, *, mapping: bool = True) -> Any:
    """Parse the JSON file ``path``; a missing, unreadable, truncated or corrupt file (or, with
    ``mapping``, one that is not a JSON object) raises :class:`DataError` naming the file
    and ``fix`` (what the user should do about it)."""
    from segloop.errors import DataError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path} is missing; {fix}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path} ({err}); {fix}") from None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise DataError(f"{path} is not valid JSON ({err}): it was cut short or edited by "
                        f"hand; {fix}") from None
    if mapping and not isinstance(data, dict):
        raise DataError(f"{path} holds a JSON {type(data).__name__}, not an object; {fix}")
    return data
