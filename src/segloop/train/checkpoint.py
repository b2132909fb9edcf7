"""Model checkpoints as safetensors files, written atomically, with the build recipe inside."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from segloop.data import temp_files
from segloop.errors import DISK_FULL_ERRNOS, DataError, ModelNotFoundError, disk_full_error
from segloop.faults import kill_point

META_KEY = "segloop"


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``model``'s state dict to ``path`` (temp name, then rename) with ``meta`` as JSON.

    Temporary files of earlier, killed writes of the same checkpoint are removed first (the
    caller holds its output's lock, so no other writer of this path is running)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}{temp_files.TEMP_INFIX}*"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(temp_files.temp_name(path.name))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    try:
        save_file(state, str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
        kill_point("checkpoint.written")
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(str(path), err) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` stored by :func:`save_checkpoint` (without loading tensors)."""
    from safetensors import safe_open

    path = Path(path)
    _require(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(META_KEY, "{}")
    except (SafetensorError, OSError) as exc:
        raise DataError(f"{path} is not a readable safetensors checkpoint ({exc}): delete it "
                        "and rerun to retrain") from exc
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise DataError(f"{path} has unreadable metadata ({exc}): delete it and rerun to "
                        "retrain") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path} has metadata that is not a JSON object: delete it and rerun "
                        "to retrain")
    return meta


def load_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load weights into ``model`` (strict: every key must match); returns the stored meta."""
    path = Path(path)
    meta = read_meta(path)
    state = load_file(str(path))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
        problem = f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
    except RuntimeError as exc:  # same keys, other shapes
        missing, unexpected, problem = [None], [], str(exc).splitlines()[-1].strip()
    if missing or unexpected:
        raise DataError(
            f"{path} does not fit the configured model ({problem}): it was saved with "
            f"{meta.get('recipe')}; fix the train section or delete the checkpoint to retrain")
    return meta


def _require(path: Path) -> None:
    if not path.is_file():
        raise ModelNotFoundError(f"checkpoint not found: {path}")
