"""An active-learning workspace as a persistent FiftyOne dataset, exported incrementally.

One sample per pool image (``filepath``: the image file; ``image_id``: segloop's id, unique
and indexed), with

* ``Segmentation`` fields from masks (``mask_path`` PNGs: never arrays in MongoDB):
  ``ground_truth``, ``prediction`` (the latest model), ``pseudo_<method>`` (each
  pseudo-label method), ``labels_rNNN`` (the labels of round NNN, ignore outside its units);
  the dataset's ``default_mask_targets`` are the classes (``{id: name}``);
* ``score_rNNN`` float fields: the image's acquisition score in round NNN (its best unit's at
  region level); tags ``selected_rNNN``: the images round NNN labelled;
* ``sam_embedding`` (a vector per image: the mean of its SAM mask embeddings) and
  ``sam_masks`` (``Detections``: one box per SAM mask, its ``embedding`` and ``score``) for
  FiftyOne Brain::

      import fiftyone.brain as fob
      fob.compute_similarity(ds, embeddings="sam_embedding", brain_key="sam_sim",
                             backend="sklearn")        # ds.sort_by_similarity(sample_id)
      fob.compute_visualization(ds, embeddings="sam_embedding", brain_key="sam_viz",
                                method="umap")         # "pca" / "tsne" without umap-learn
      fob.compute_similarity(ds, patches_field="sam_masks", embeddings="embedding",
                             brain_key="sam_mask_sim", backend="sklearn")
      fob.compute_visualization(ds, patches_field="sam_masks", embeddings="embedding",
                                brain_key="sam_mask_viz", method="pca")

  (recompute them after an export changed the embeddings: a brain run indexes what was
  there when it ran).

:func:`export_dataset` takes plain inputs; :func:`export_workspace` reads a segloop workspace
and calls it. Exports are incremental and idempotent: only values that differ from the
stored ones are written (an unchanged re-export writes nothing, so label ids stay), samples
are matched by ``image_id`` (never duplicated), and a field given again is replaced as a
whole (samples missing from its mapping are cleared) while fields not given are left alone.
FiftyOne's App draws no pixel of value 0 (background): class 0 is not drawn.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock
from PIL import Image

from segloop.data import temp_files
from segloop.errors import DataError

if TYPE_CHECKING:
    import fiftyone as fo


log = logging.getLogger(__name__)

KEY_FIELD = "image_id"
GROUND_TRUTH = "ground_truth"
PREDICTION = "prediction"
EMBEDDING_FIELD = "sam_embedding"
PATCHES_FIELD = "sam_masks"
PATCH_LABEL = "sam_mask"
FIFTYONE_DIR = "work/fiftyone"
"""Inside the workspace (git-ignored ``work/``): ``db/`` (MongoDB) and ``masks/`` (PNGs)."""

MaskLike = np.ndarray | str | Path
"""A mask: an (H, W) integer or bool array (written as a PNG), or a PNG file (used as is)."""

_FIELD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_RESERVED = {"id", "filepath", "tags", "metadata", "media_type", "created_at",
             "last_modified_at", KEY_FIELD}
_SAFE_ID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}")


def labels_field(n: int) -> str:
    """``labels_r003``: the labels of round 3."""
    return f"labels_r{n:03d}"


def score_field(n: int) -> str:
    """``score_r003``: the acquisition scores of round 3."""
    return f"score_r{n:03d}"


def selected_tag(n: int) -> str:
    """``selected_r003``: the tag of the images round 3 selected."""
    return f"selected_r{n:03d}"


def pseudo_field(method: str) -> str:
    """``pseudo_<method>`` (other characters than letters, digits and _ become _)."""
    return "pseudo_" + re.sub(r"[^0-9A-Za-z_]", "_", method)


@dataclass(frozen=True)
class MaskPatch:
    """One SAM mask as a FiftyOne patch: its box in pixels (x0, y0, x1, y1) of an image of
    ``image_hw`` (height, width), its embedding (D,) and optionally a score (SAM's IoU)."""

    bbox_xyxy: tuple[float, float, float, float]
    image_hw: tuple[int, int]
    embedding: np.ndarray
    score: float | None = None


@dataclass(frozen=True)
class ExportSummary:
    """What an export did: ``changed`` maps each field (or tag) given to the number of samples
    whose value it wrote (0 everywhere: the dataset already held this export)."""

    dataset: str
    samples: int
    added: int
    removed: int
    changed: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def written(self) -> str:
        """``"field n, ..."`` for the fields it wrote, or ``"nothing changed"``."""
        return ", ".join(f"{k} {v}" for k, v in self.changed.items() if v) or "nothing changed"


def export_dataset(
    name: str,
    images: Mapping[str, str | Path],
    classes: Sequence[str] | Mapping[int, str],
    mask_dir: str | Path,
    masks: Mapping[str, Mapping[str, MaskLike]] | None = None,
    scores: Mapping[int, Mapping[str, float]] | None = None,
    selected: Mapping[int, Iterable[str]] | None = None,
    embeddings: Mapping[str, np.ndarray] | None = None,
    mask_patches: Mapping[str, Sequence[MaskPatch]] | None = None,
    *,
    embeddings_field: str = EMBEDDING_FIELD,
    patches_field: str = PATCHES_FIELD,
    prune: bool = False,
    colors: Mapping[int, str] | None = None,
) -> ExportSummary:
    """Create or update the persistent FiftyOne dataset ``name`` (FiftyOne's database must be
    usable: :func:`segloop.tracking.fiftyone_db.ensure_database`).

    ``images``: image id -> image file, one sample each (``prune``: delete samples of ids not
    in it). ``classes``: names in id order, or {id: name}: the mask targets. ``masks``: field
    name -> {image id -> mask}; arrays are written to ``mask_dir/<name>/<field>/<image
    id>.<content hash>.png`` (atomically; a new mask gets a new file, so the App never
    shows a cached old one, and the replaced file is deleted), files are referenced where
    they are.
    ``scores``: round -> {image id -> score} (``score_rNNN``; NaN: none). ``selected``:
    round -> image ids (tag ``selected_rNNN``). ``embeddings``: image id -> (D,) vector
    (``embeddings_field``). ``mask_patches``: image id -> its SAM masks (``patches_field``).
    ``colors``: class id -> ``"#rrggbb"``: the App colours every mask by class with them
    (else FiftyOne's one colour per field). Every id must be one of ``images`` (else
    :class:`DataError`). Returns what changed."""
    from segloop.tracking.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()

    t0 = time.perf_counter()
    masks, scores, selected = masks or {}, scores or {}, selected or {}
    targets = _mask_targets(classes)
    _check_inputs(images, masks, scores, selected, embeddings, mask_patches, embeddings_field,
                  patches_field)
    mask_dir = Path(mask_dir).expanduser().resolve() / _file_stem(name)
    mask_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(mask_dir / ".export.lock")):
        ds = _open_dataset(fo, name)
        added, removed = _sync_samples(fo, ds, images, prune)
        if added:  # image size, type and bytes, shown by the App (read once per sample)
            ds.compute_metadata(num_workers=1, warn_failures=True, progress=False)
        ids = dict(zip(ds.values(KEY_FIELD), ds.values("id"), strict=True))
        if ds.default_mask_targets != targets:
            ds.default_mask_targets = targets
        if colors is not None:
            _set_class_colors(fo, ds, colors)
        changed: dict[str, int] = {}
        for fname, by_id in masks.items():
            paths = {iid: _mask_file(mask_dir, fname, iid, m) for iid, m in by_id.items()}
            changed[fname] = _set_segmentations(fo, ds, fname, ids, paths, mask_dir / fname)
        for n, by_id in sorted(scores.items()):
            values = {iid: _float(v) for iid, v in by_id.items()}
            changed[score_field(n)] = _set_field(
                ds, score_field(n), ids, values, lambda v: v, lambda a, b: a == b)
        for n, chosen in sorted(selected.items()):
            changed[selected_tag(n)] = _set_tag(ds, selected_tag(n), ids, chosen)
        if embeddings is not None:
            vectors = {iid: np.asarray(v, np.float32).ravel() for iid, v in embeddings.items()}
            changed[embeddings_field] = _set_field(
                ds, embeddings_field, ids, vectors, lambda v: v, _same_vector)
        if mask_patches is not None:
            changed[patches_field] = _set_field(
                ds, patches_field, ids, dict(mask_patches), lambda p: _detections(fo, p),
                _same_patches, dynamic=True)
        samples = len(ds)
    summary = ExportSummary(name, samples, added, removed, changed, time.perf_counter() - t0)
    log.info("FiftyOne dataset %s: %d samples (%d added, %d removed), changed %s in %.1f s",
             name, samples, added, removed, {k: v for k, v in changed.items() if v} or "nothing",
             summary.seconds)
    return summary


# ---- the dataset and its samples -------------------------------------------------------


def _set_class_colors(fo: Any, ds: Any, colors: Mapping[int, str]) -> None:
    """The App's colour scheme: masks coloured by class value (``colors``), saved with the
    dataset; left as it is when it already says so."""
    wanted = [{"intTarget": int(k), "color": str(v)} for k, v in sorted(colors.items())]
    scheme = ds.app_config.color_scheme
    if (scheme is not None and scheme.color_by == "value"
            and list(scheme.default_mask_targets_colors or []) == wanted):
        return
    ds.app_config.color_scheme = fo.ColorScheme(color_by="value", opacity=0.6,
                                                default_mask_targets_colors=wanted)
    ds.save()


def _open_dataset(fo: Any, name: str) -> fo.Dataset:
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        if not ds.has_field(KEY_FIELD):
            raise DataError(f"FiftyOne dataset {name!r} was not made by segloop (it has no "
                            f"{KEY_FIELD!r} field): pick another name or delete it "
                            f"(fo.delete_dataset({name!r}))")
        return ds
    ds = fo.Dataset(name)
    ds.persistent = True
    ds.add_sample_field(KEY_FIELD, fo.StringField)
    ds.create_index(KEY_FIELD, unique=True)
    return ds


def _sync_samples(fo: Any, ds: fo.Dataset, images: Mapping[str, str | Path],
                  prune: bool) -> tuple[int, int]:
    """Add the samples of new ids, update moved files, delete others with ``prune``."""
    stored = dict(zip(ds.values(KEY_FIELD), zip(ds.values("id"), ds.values("filepath"),
                                                 strict=True), strict=True))
    new, moved = [], {}
    for iid, path in images.items():
        filepath = _filepath(path)
        if iid not in stored:
            new.append(fo.Sample(filepath=filepath, **{KEY_FIELD: iid}))
        elif stored[iid][1] != filepath:
            moved[stored[iid][0]] = filepath
    if new:
        ds.add_samples(new, progress=False)
    if moved:
        ds.set_values("filepath", moved, key_field="id")
    gone = [sid for iid, (sid, _) in stored.items() if iid not in images] if prune else []
    if gone:
        ds.delete_samples(gone)
    return len(new), len(gone)


def _filepath(path: str | Path) -> str:
    text = str(path)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        raise DataError(f"image {text!r} is not a local file: FiftyOne (open source) reads "
                        "images from local disk; copy the pool there first")
    return str(Path(text).expanduser().resolve())


def _mask_targets(classes: Sequence[str] | Mapping[int, str]) -> dict[int, str]:
    items = classes.items() if isinstance(classes, Mapping) else enumerate(classes)
    return {int(k): str(v) for k, v in items}


def _check_inputs(images: Mapping[str, Any], masks: Mapping[str, Any],
                  scores: Mapping[int, Any], selected: Mapping[int, Any],
                  embeddings: Mapping[str, Any] | None, patches: Mapping[str, Any] | None,
                  embeddings_field: str, patches_field: str) -> None:
    names = [*masks, *(score_field(n) for n in scores)]
    names += [embeddings_field] if embeddings is not None else []
    names += [patches_field] if patches is not None else []
    for fname in names:
        if not _FIELD_RE.fullmatch(fname) or fname in _RESERVED:
            raise DataError(f"{fname!r} cannot be a FiftyOne field here: use letters, digits "
                            f"and _ (starting with a letter), not one of {sorted(_RESERVED)}")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"field names given twice: {twice}")
    known = set(images)
    where: list[tuple[str, Iterable[str]]] = [(f"masks[{k!r}]", v) for k, v in masks.items()]
    where += [(f"scores[{n}]", v) for n, v in scores.items()]
    where += [(f"selected[{n}]", v) for n, v in selected.items()]
    where += [("embeddings", embeddings or {}), ("mask_patches", patches or {})]
    for what, ids in where:
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise DataError(f"{what} names {len(unknown)} image id(s) not in images, e.g. "
                            f"{unknown[:3]}")


# ---- masks --------------------------------------------------------------------------------


def _mask_file(mask_dir: Path, fname: str, iid: str, mask: MaskLike) -> str:
    """The PNG of a mask: a file as it is, an array written under ``mask_dir`` if changed."""
    if isinstance(mask, str | Path):
        path = Path(mask).expanduser().resolve()
        if not path.is_file():
            raise DataError(f"mask of {iid!r} in {fname!r}: {path} does not exist")
        return str(path)
    data = _png_bytes(np.asarray(mask), f"mask of {iid!r} in {fname!r}")
    digest = hashlib.sha256(data).hexdigest()[:12]
    out = mask_dir / fname / f"{_file_stem(iid)}.{digest}.png"
    if out.is_file() and out.stat().st_size == len(data):
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(temp_files.temp_name(out.name))
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return str(out)


def _png_bytes(a: np.ndarray, what: str) -> bytes:
    if a.ndim != 2:
        raise DataError(f"{what}: a mask is (H, W), got shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{what}: class ids are integers, got dtype {a.dtype}")
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if lo < 0 or hi > 65535:
        raise DataError(f"{what}: values {lo}..{hi} do not fit a PNG (0..65535)")
    a = np.ascontiguousarray(a, dtype=np.uint8 if hi <= 255 else np.uint16)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _file_stem(iid: str) -> str:
    if _SAFE_ID.fullmatch(iid) and not iid.startswith("."):
        return iid
    return "id-" + hashlib.sha256(iid.encode()).hexdigest()[:32]


def _set_segmentations(fo: Any, ds: fo.Dataset, fname: str, ids: Mapping[str, str],
                       paths: Mapping[str, str], own: Path) -> int:
    """Set ``fname`` where its mask file changed; delete replaced files of ``own``."""
    if ds.has_field(fname):
        ftype = ds.get_field(fname)
        if getattr(ftype, "document_type", None) is not fo.Segmentation:
            raise DataError(f"field {fname!r} of dataset {ds.name!r} is not a Segmentation "
                            f"({ftype}): delete it (ds.delete_sample_field({fname!r}))")
        current = dict(zip(ds.values("id"), ds.values(f"{fname}.mask_path"), strict=True))
    else:
        current = {}
    changed: dict[str, Any] = {}
    for iid, sid in ids.items():
        path = paths.get(iid)
        if current.get(sid) != path:
            changed[sid] = None if path is None else fo.Segmentation(mask_path=path)
    n = _write(ds, fname, changed)
    for sid in changed:
        old = current.get(sid)
        if old is not None and Path(old).parent == own:
            Path(old).unlink(missing_ok=True)
    return n


# ---- scores, tags, embeddings ------------------------------------------------------------


def _float(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _set_field(ds: fo.Dataset, fname: str, ids: Mapping[str, str], values: Mapping[str, Any],
               build: Callable[[Any], Any], same: Callable[[Any, Any], bool],
               dynamic: bool = False) -> int:
    """Set ``fname`` to ``build(values[id])`` (None where absent) where it differs."""
    current = (dict(zip(ds.values("id"), ds.values(fname), strict=True))
               if ds.has_field(fname) else {})
    changed: dict[str, Any] = {}
    for iid, sid in ids.items():
        new, old = values.get(iid), current.get(sid)
        if new is None and old is None:
            continue
        if new is None or old is None or not same(old, new):
            changed[sid] = None if new is None else build(new)
    return _write(ds, fname, changed, dynamic)


def _write(ds: fo.Dataset, fname: str, changed: dict[str, Any], dynamic: bool = False) -> int:
    """``dynamic``: declare the labels' attributes too (Brain finds patch embeddings so)."""
    if not changed or (not ds.has_field(fname)
                       and all(v is None for v in changed.values())):
        return 0
    ds.set_values(fname, changed, key_field="id", dynamic=dynamic)
    return len(changed)


def _set_tag(ds: fo.Dataset, tag: str, ids: Mapping[str, str], chosen: Iterable[str]) -> int:
    want = {ids[i] for i in chosen}
    have = set(ds.match_tags(tag).values("id"))
    if want - have:
        ds.select(sorted(want - have)).tag_samples(tag)
    if have - want:
        ds.select(sorted(have - want)).untag_samples(tag)
    return len(want ^ have)


def _same_vector(old: Any, new: np.ndarray) -> bool:
    old = np.asarray(old)
    return old.shape == new.shape and bool(np.array_equal(old, new))


def _detections(fo: Any, patches: Sequence[MaskPatch]) -> Any:
    dets = []
    for p in patches:
        h, w = p.image_hw
        x0, y0, x1, y1 = (float(v) for v in p.bbox_xyxy)
        box = [x0 / w, y0 / h, max(x1 - x0, 0.0) / w, max(y1 - y0, 0.0) / h]
        extra = {} if p.score is None else {"score": float(p.score)}
        dets.append(fo.Detection(label=PATCH_LABEL, bounding_box=box,
                                 embedding=np.asarray(p.embedding, np.float32).ravel(),
                                 **extra))
    return fo.Detections(detections=dets)


def _same_patches(old: Any, new: Sequence[MaskPatch]) -> bool:
    from segloop.tracking.fiftyone_setup import import_fiftyone

    built = _detections(import_fiftyone(), new).detections
    dets = old.detections if old is not None else []
    if len(dets) != len(built):
        return False
    for a, b in zip(dets, built, strict=True):
        if (list(a.bounding_box) != list(b.bounding_box) or a.get_field("score") != b.get_field(
                "score") or not _same_vector(a.get_field("embedding"), b.embedding)):
            return False
    return True
