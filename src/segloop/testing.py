"""Small, seeded, generated data for tests and demos (no downloads).

These are the fixtures the test suite uses; they are in the package so that users can build
the same tiny datasets to try a pipeline in seconds.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segloop.data.fs import join, url_to_fs


def png_bytes(array: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    """Encode an array ((H, W) or (H, W, 3) uint8) as an image file (PNG unless ``fmt``)."""
    img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def put(url: str, data: bytes) -> str:
    """Write bytes at a URL or path, creating parent folders; returns the URL."""
    fs, path = url_to_fs(url)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, data)
    return url


def write_camvid(
    root: str,
    splits: dict[str, int],
    hw: tuple[int, int] = (6, 8),
    seed: int = 0,
    num_classes: int = 11,
    ignore: int = 11,
) -> dict[str, list[str]]:
    """Write a CamVid-layout tree at ``root`` (path or fsspec URL); returns names per split.

    ``<split>annot/<split>_NNN.png`` are (H, W) uint8 id maps made of a 4x4 grid of blocks,
    each of a random class in 0..num_classes-1, with pixel (0, 0) set to ``ignore``;
    ``<split>/`` holds the RGB images (H, W, 3) uint8: each class's colour plus noise, so a
    model can learn them and superpixels follow the blocks. Files are written out of order
    (listing must sort).
    """
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (num_classes, 3))
    fs, path = url_to_fs(root)
    names: dict[str, list[str]] = {}
    for split, n in splits.items():
        fs.makedirs(f"{path}/{split}", exist_ok=True)
        fs.makedirs(f"{path}/{split}annot", exist_ok=True)
        names[split] = []
        for i in reversed(range(n)):
            label = _block_label(rng, hw, num_classes)
            image = _image_for(rng, label, palette)
            label[0, 0] = ignore
            name = f"{split}_{i:03d}.png"
            put(join(root, split, name), png_bytes(image))
            put(join(root, f"{split}annot", name), png_bytes(label))
            names[split].append(name)
        names[split].sort()
    return names


def _block_label(rng: np.random.Generator, hw: tuple[int, int], num_classes: int) -> np.ndarray:
    h, w = hw
    grid = rng.integers(0, num_classes, (4, 4), dtype=np.uint8)
    rows = np.minimum(np.arange(h) * 4 // max(h, 1), 3)
    cols = np.minimum(np.arange(w) * 4 // max(w, 1), 3)
    return grid[rows[:, None], cols[None, :]]


def _image_for(rng: np.random.Generator, label: np.ndarray, palette: np.ndarray) -> np.ndarray:
    noise = rng.integers(-20, 21, (*label.shape, 3))
    return np.clip(palette[label] + noise, 0, 255).astype(np.uint8)


def all_strings(value: Any) -> list[str]:
    """Every string in a JSON-like value (dict keys and values, list items), depth first:
    what a results file holds that could be a machine path."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in all_strings(k) + all_strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in all_strings(v)]
    return []


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(cmd: list[str], health: str, log_path: Path, env: dict[str, str] | None = None,
           timeout: float = 90.0) -> Iterator[None]:
    """Run a server (``cmd``, its own process group, dying with this process) until the
    block ends; returns once ``health`` answers 200. Its output goes to ``log_path``; a
    server that exits or is not up within ``timeout`` s raises with the log's tail."""
    import os
    import signal
    import subprocess
    import time

    import httpx

    from segloop.flows._server import _die_with_parent

    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{cmd[:4]} exited ({proc.returncode}):\n"
                                       f"{log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(health, timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{cmd[:4]} not up in {timeout} s:\n"
                                       f"{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def tiny_loop_config(tmp: str | Path, camvid_root: str | Path, **sections: dict[str, Any]
                     ) -> Any:
    """A small active-learning :class:`~segloop.config.Config` for tests: the generated
    CamVid at ``camvid_root`` at 24x32, a 4-wide 2-level U-Net trained 2 steps, 20% of the
    pool per round by entropy; workspace, DVC remote and reports under ``tmp``. Each of
    ``sections`` (``active={"rounds": 1}``, ``tracking={...}``) updates that section."""
    from segloop.config import parse_config

    tmp = Path(tmp)
    raw: dict[str, dict[str, Any]] = {
        "base": {"seed": 1, "paths": {"workspace": str(tmp / "ws"),
                                      "dvc_remote": str(tmp / "remote"),
                                      "reports": str(tmp / "reports")}},
        "data": {"root": str(camvid_root)},
        "train": {"model": "unet", "width": 4, "depth": 2, "steps": 2, "batch_size": 2},
        "active": {"image_size": [24, 32], "initial_fraction": 0.2, "budget_per_round": 0.2,
                   "strategy": "entropy"}}
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return parse_config(raw)


def two_label_rounds(cfg: Any) -> Any:
    """Label rounds 0 and 1 of ``cfg``'s loop committed through the library's steps (the
    initial pick, a model trained on round 0 scoring the pool, simulated labels); returns
    the loop's :class:`~segloop.active.loop.ALContext`."""
    from segloop.active import loop

    ctx = loop.prepare(cfg)
    sel, scores = loop.initial_selection(ctx)
    loop.commit_labels(ctx, 0, sel, loop.simulate_labels(ctx, sel),
                       cfg.active.initial_strategy, "simulated", scores=scores)
    state = loop.label_state(ctx, 0)
    model, _ = loop.train_after(ctx, 0, state, progress=False)
    sel, scores, _ = loop.score_and_select(ctx, model, state, 1, progress=False)
    loop.commit_labels(ctx, 1, sel, loop.simulate_labels(ctx, sel), cfg.active.strategy,
                       "simulated", scores=scores)
    return ctx
