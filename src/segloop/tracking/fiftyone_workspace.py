"""A segloop active-learning workspace as a FiftyOne dataset (``segloop fiftyone export``):
the pool, ground truth, each round's labels, scores and picks, the latest model's
prediction, pseudo-labels and SAM embeddings, through :func:`export_dataset`."""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segloop.errors import DataError
from segloop.tracking.fiftyone_export import (
    FIFTYONE_DIR,
    GROUND_TRUTH,
    PREDICTION,
    ExportSummary,
    MaskLike,
    MaskPatch,
    export_dataset,
    labels_field,
    pseudo_field,
)

if TYPE_CHECKING:
    from segloop.active.loop import ALContext
    from segloop.config import Config

log = logging.getLogger(__name__)


class _Lazy(Mapping[str, Any]):
    """A mapping whose values are computed when read (one mask in memory at a time)."""

    def __init__(self, keys: Sequence[str], get: Callable[[str], Any]) -> None:
        self._keys, self._get = list(keys), get
        self._set = set(self._keys)

    def __getitem__(self, key: str) -> Any:
        if key not in self._set:
            raise KeyError(key)
        return self._get(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def default_dataset_name(workspace: Path) -> str:
    """``segloop-<folder name>-<8 hex of its path>``: one dataset per workspace."""
    root = Path(workspace).resolve()
    return f"segloop-{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


def export_workspace(cfg_or_ctx: Config | ALContext, dataset_name: str | None = None, *,
                     predict: bool = True, pseudolabels: bool = True,
                     embeddings: bool | str | Path = True, database_uri: str | None = None,
                     prune: bool = True) -> ExportSummary:
    """Export an active-learning workspace (a config, or the loop's context) to FiftyOne.

    Starts (or joins) the workspace's database in ``work/fiftyone/db`` unless
    ``database_uri`` / ``FIFTYONE_DATABASE_URI`` names one, and writes masks to
    ``work/fiftyone/masks``. Samples: the pool images (``pool.image_uris``); ground truth from
    the pool (working resolution; the App scales masks to the image); ``labels_rNNN`` and
    ``selected_rNNN`` from each committed round (``data/labels/round_NNN``); ``score_rNNN``
    from its ``scores.parquet`` (the round's copy, else ``work/round_NNN/``; an image's best
    unit), also for a round scored but not committed yet; ``prediction`` from the latest
    model (``predict``); ``pseudo_<method>`` from the latest round of each
    ``data/pseudolabels/<method>/`` and the configured ``active.pseudolabels``
    (``pseudolabels``); SAM embeddings from the embed output (``embeddings``: True: the
    configured ``embed.output`` if it exists; a folder; False: none)."""
    from segloop.active.loop import ALContext, load_model, open_context
    from segloop.tracking.fiftyone_db import ensure_database

    ctx = cfg_or_ctx if isinstance(cfg_or_ctx, ALContext) else open_context(cfg_or_ctx)
    root = ctx.ws.root
    ensure_database(root / FIFTYONE_DIR / "db", uri=database_uri)
    pool = ctx.pool
    image_ids = list(pool.arrays.image_ids)
    index = {iid: i for i, iid in enumerate(image_ids)}
    images = dict(zip(image_ids, pool.image_uris, strict=True))
    masks: dict[str, Mapping[str, MaskLike]] = {}
    if pool.arrays.labels is not None:
        labels = pool.arrays.labels
        masks[GROUND_TRUTH] = _Lazy(image_ids, lambda iid: _as_numpy(labels[index[iid]]))
    rounds = _round_numbers(ctx)
    selected: dict[int, list[str]] = {}
    for n in rounds:
        folder = ctx.round_dir(n)
        masks[labels_field(n)] = {p.stem: p for p in sorted((folder / "labels").glob("*.png"))
                                  if p.stem in index}
        selected[n] = _round_image_ids(folder, index)
    scores = _round_scores(ctx, rounds, index)
    if predict:
        prediction = _predict(ctx, rounds, load_model)
        if prediction is not None:
            masks[PREDICTION] = prediction
    if pseudolabels:
        masks.update(_pseudolabels(ctx, index))
    emb, patches = _embeddings(ctx, embeddings, image_ids)
    return export_dataset(
        dataset_name or default_dataset_name(root), images, ctx.classes.names,
        root / FIFTYONE_DIR / "masks", masks, scores, selected, emb, patches, prune=prune,
        colors=_class_colors(ctx))


def _class_colors(ctx: ALContext) -> dict[int, str]:
    """Class id -> ``"#rrggbb"`` from the dataset's palette (the colours of segloop's own
    plots and previews)."""
    palette = ctx.classes.colors
    return {i: "#{:02x}{:02x}{:02x}".format(*palette[i].tolist())
            for i in range(len(ctx.classes.names))}


def _as_numpy(x: Any) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _round_numbers(ctx: ALContext) -> list[int]:
    from segloop.active.loop import committed_rounds

    return [r.number for r in committed_rounds(ctx) if ctx.round_dir(r.number).is_dir()]


def _round_image_ids(folder: Path, index: Mapping[str, int]) -> list[str]:
    from segloop.data.parquet import read_table
    from segloop.data.schemas import LABEL_ROUND

    table = read_table(str(folder / "round.parquet"), LABEL_ROUND, columns=["image_id"])
    return sorted({i for i in table.column("image_id").to_pylist() if i in index})


def _round_scores(ctx: ALContext, rounds: list[int],
                  index: Mapping[str, int]) -> dict[int, dict[str, float]]:
    """Round -> image id -> the best score of its units (committed rounds and one scored but
    not committed yet)."""
    from segloop.data.parquet import read_table
    from segloop.data.schemas import SCORES

    numbers = set(rounds)
    work = ctx.ws.root / "work"
    for p in work.glob("round_*/scores.parquet"):
        m = re.fullmatch(r"round_(\d{3,})", p.parent.name)
        if m:
            numbers.add(int(m.group(1)))
    out: dict[int, dict[str, float]] = {}
    for n in sorted(numbers):
        path = ctx.round_dir(n) / "scores.parquet"
        if n not in rounds or not path.is_file():
            path = ctx.work_dir(n) / "scores.parquet"
        if not path.is_file():
            continue
        table = read_table(str(path), SCORES, columns=["image_id", "score"])
        best: dict[str, float] = {}
        for iid, s in zip(table.column("image_id").to_pylist(),
                          table.column("score").to_pylist(), strict=True):
            if iid in index and s is not None and not math.isnan(s):
                best[iid] = max(s, best.get(iid, -math.inf))
        out[n] = best
    return out


def _predict(ctx: ALContext, rounds: list[int],
             load_model: Callable[[ALContext, int], Any]) -> dict[str, np.ndarray] | None:
    """The latest model's argmax over the pool (None without a model)."""
    from segloop.train.loop import iter_probs

    trained = [k for k in rounds if ctx.model_path(k).is_file()]
    if not trained:
        return None
    k = max(trained)
    model = load_model(ctx, k)
    ids = ctx.pool.arrays.image_ids
    out: dict[str, np.ndarray] = {}
    for sl, probs in iter_probs(model, ctx.pool.arrays.images, ctx.device,
                                ctx.cfg.train.eval_batch_size):
        pred = probs.argmax(1).to("cpu").numpy().astype(np.uint8)
        for j, i in enumerate(range(sl.start, sl.stop)):
            out[ids[i]] = pred[j]
    log.info("prediction: the model of rounds 0..%d over %d pool images", k, len(out))
    return out


def _pseudolabels(ctx: ALContext, index: Mapping[str, int]) -> dict[str, dict[str, Path]]:
    """``pseudo_<method>`` -> the latest round of each method under data/pseudolabels, and the
    configured ``active.pseudolabels`` round (which wins for its method)."""
    from segloop.active.seeds import resolve_folder
    from segloop.pseudolabel.store import LABELS_DIR, read_round_meta

    folders: dict[str, Path] = {}
    base = ctx.ws.root / "data" / "pseudolabels"
    for method_dir in sorted(p for p in base.glob("*") if p.is_dir()):
        done = sorted(p for p in method_dir.glob("round_*") if (p / "round.json").is_file())
        if done:
            folders[method_dir.name] = done[-1]
    if ctx.cfg.active.pseudolabels:
        folder = resolve_folder(ctx.cfg.active.pseudolabels, ctx.ws.root)
        method = str(read_round_meta(folder).get("method") or folder.parent.name)
        folders[method] = folder
    out = {}
    for method, folder in folders.items():
        files = {p.stem: p for p in sorted((folder / LABELS_DIR).glob("*.png"))
                 if p.stem in index}
        if files:
            out[pseudo_field(method)] = files
    return out


def _embeddings(ctx: ALContext, which: bool | str | Path, image_ids: list[str]
                ) -> tuple[dict[str, np.ndarray] | None, dict[str, list[MaskPatch]] | None]:
    """Per image: the mean SAM mask embedding, and one patch per mask (None, None: none)."""
    if which is False:
        return None, None
    if which is True:
        folder = ctx.ws.root / ctx.cfg.embed.output.format(name=ctx.cfg.data.name)
    else:
        folder = Path(which)
    if not (folder / "masks").is_dir():
        if which is not True:
            raise DataError(f"{folder} holds no SAM embeddings (no masks/ folder): run the "
                            "embed flow, or pass embeddings=False")
        return None, None
    import pyarrow.compute as pc

    from segloop.data.parquet import read_table

    table = read_table(str(folder / "masks"), None, columns=[
        "image_id", "point_index", "height", "width", "bbox_xyxy", "predicted_iou",
        "embedding"], filters=pc.field("image_id").isin(image_ids))
    table = table.sort_by([("image_id", "ascending"), ("point_index", "ascending")])
    patches: dict[str, list[MaskPatch]] = {}
    cols = {c: table.column(c) for c in ("image_id", "height", "width", "bbox_xyxy",
                                         "predicted_iou")}
    emb = table.column("embedding")
    for r in range(table.num_rows):
        iid = cols["image_id"][r].as_py()
        vec = np.asarray(emb[r].values.to_numpy(zero_copy_only=False), np.float32)
        patches.setdefault(iid, []).append(MaskPatch(
            tuple(cols["bbox_xyxy"][r].as_py()),
            (cols["height"][r].as_py(), cols["width"][r].as_py()), vec,
            cols["predicted_iou"][r].as_py()))
    means = {iid: np.mean([p.embedding for p in ps], axis=0) for iid, ps in patches.items()}
    return means, patches
