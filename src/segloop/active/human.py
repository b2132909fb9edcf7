"""The human path: export a round's selection as labelling tasks, import the finished labels.

Tasks are at the images' original resolution (region masks are upsampled with nearest
neighbour from the working resolution); imported labels are checked strictly against the
exported selection, brought back to the working resolution and committed as the round.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from segloop.active.loop import ALContext, commit_labels
from segloop.active.selection import Budget, Selection, Unit
from segloop.data.images import write_bytes_atomic
from segloop.data.json_io import read_json
from segloop.errors import ConfigError, DataError
from segloop.labeling import (
    PendingSelection,
    TaskUnit,
    export_coco,
    export_labelstudio,
    import_labels,
    labeling_config,
    local_files_url,
    read_selection,
    write_selection,
)
from segloop.versioning import RoundInfo, next_round_number

TASKS = "tasks"
UNITS_FILE = "units.json"


def _resize_nearest(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if a.shape == tuple(hw):
        return a
    return np.asarray(Image.fromarray(a).resize((hw[1], hw[0]), Image.NEAREST))


def task_units(ctx: ALContext, selection: Selection) -> tuple[TaskUnit, ...]:
    """One task unit per selected unit, masks at the original image size."""
    arrays = ctx.pool.arrays
    out = []
    for u in selection.units:
        h, w = arrays.original_hw[u.image_index]
        mask = None
        if u.region_id >= 0:
            assert ctx.pool.regions is not None
            small = (ctx.pool.regions[u.image_index] == u.region_id).astype(np.uint8)
            mask = _resize_nearest(small, (h, w)).astype(bool)
        out.append(TaskUnit(image_id=arrays.image_ids[u.image_index],
                            name=arrays.names[u.image_index],
                            image_uri=ctx.pool.image_uris[u.image_index],
                            region_id=u.region_id, height=h, width=w, mask=mask))
    return tuple(out)


def export_round(ctx: ALContext, n: int, selection: Selection, strategy: str) -> Path:
    """Write ``work/round_NNN/tasks/``: selection.json, coco.json, labelstudio.json and the
    Label Studio labelling config; returns the folder.

    An existing export of round ``n`` is kept as it is (people may be labelling it: a new
    export would change its digest and refuse their work)."""
    out = ctx.work_dir(n) / TASKS
    if pending_exists(ctx, n):
        return out
    out.mkdir(parents=True, exist_ok=True)
    pending = PendingSelection(
        round=n, strategy=strategy, level=ctx.cfg.active.level,
        classes=list(ctx.classes.names), ignore_index=ctx.classes.ignore_index,
        units=task_units(ctx, selection), created_at=datetime.now(UTC).isoformat())
    write_selection(pending, out)
    export_coco(pending, out / "coco.json")
    export_labelstudio(pending, out / "labelstudio.json", _image_url(ctx))
    write_bytes_atomic(str(out / "labelstudio_config.xml"), labeling_config(ctx.classes).encode())
    units = {"strategy": strategy, "budget": selection.budget.__dict__,
             "units": [dataclasses.asdict(u) for u in selection.units]}
    write_bytes_atomic(str(out / UNITS_FILE), (json.dumps(units, indent=1) + "\n").encode())
    return out


def _image_url(ctx: ALContext) -> Callable[[str], str] | None:
    """How Label Studio tasks point at images (``active.labelstudio_images``)."""
    ac = ctx.cfg.active
    if ac.labelstudio_images == "path":
        return None
    if ac.labelstudio_document_root is None:
        raise ConfigError("active.labelstudio_images: local-files needs "
                          "active.labelstudio_document_root: the folder Label Studio serves "
                          "(its LOCAL_FILES_DOCUMENT_ROOT), which must hold the images")
    return partial(local_files_url, document_root=ac.labelstudio_document_root)


def pending_exists(ctx: ALContext, n: int) -> bool:
    """Whether round ``n``'s tasks were exported (and wait for labels)."""
    folder = ctx.work_dir(n) / TASKS
    return (folder / "selection.json").is_file() and (folder / UNITS_FILE).is_file()


def _selection_back(folder: Path) -> tuple[Selection, str]:
    path = folder / UNITS_FILE
    fix = ("it is written by the active_learning flow when it exports a round: delete the "
           f"folder {folder} and run the flow again to export the round afresh")
    raw = read_json(path, fix)
    try:
        units = tuple(Unit(**u) for u in raw["units"])
        budget = Budget(**raw["budget"])
    except (KeyError, TypeError) as err:
        raise DataError(f"{path} does not describe a round's units ({err!r}); {fix}") from None
    spent = sum(u.pixels for u in units)
    clicks = sum(u.region_id >= 0 for u in units)
    sel = Selection(units=units, spent_pixels=spent,
                    spent_cost=spent + clicks * budget.click_cost_pixels, clicks=clicks,
                    budget=budget)
    return sel, str(raw["strategy"])


#: A round with more than this share of selected units left unlabelled is refused (unless
#: allowed): the sign of pre-annotations submitted unchanged.
MAX_EMPTY_SHARE = 0.5


def import_round(ctx: ALContext, path: str | Path,
                 allow_unlabelled: bool = False) -> tuple[RoundInfo, int]:
    """Validate the finished labels at ``path`` against the pending round and commit it;
    returns the round and the number of tasks of earlier rounds the file held (skipped).

    A file in which no selected unit (or more than :data:`MAX_EMPTY_SHARE` of them) holds a
    label is refused unless ``allow_unlabelled``: it is what submitting the pre-annotated
    tasks unchanged produces, and a committed round cannot be edited (only retracted). The
    round records the pixels actually labelled in each unit."""
    n = next_round_number(ctx.ws)
    folder = ctx.work_dir(n) / TASKS
    if not (folder / "selection.json").is_file():
        raise DataError(f"no exported tasks for round {n} in {folder}: run the "
                        "active_learning flow with active.annotator: human first")
    pending = read_selection(folder / "selection.json")
    imported = import_labels(path, pending, ctx.classes)
    total = imported.units_labelled + imported.units_empty
    if not allow_unlabelled and (imported.units_labelled == 0
                                 or imported.units_empty > MAX_EMPTY_SHARE * total):
        raise DataError(
            f"{path}: {imported.units_empty} of the {total} selected units of round {n} have "
            f"no label ({imported.units_labelled} labelled). Submitting the tasks with their "
            "'to-label' pre-annotations unchanged gives exactly this. Paint each region with "
            "its class and export again; if the units really are to stay unlabelled, rerun "
            "with --allow-unlabelled (they then count as labelled-nothing)")
    selection, strategy = _selection_back(folder)
    ids = ctx.pool.arrays.image_ids
    if (sorted((u.image_id, u.region_id) for u in pending.units)
            != sorted((ids[u.image_index], u.region_id) for u in selection.units)):
        raise DataError(
            f"{folder / UNITS_FILE} does not list the units of {folder / 'selection.json'} "
            "(it was edited, or is left from another export): delete the folder "
            f"{folder} and run the active_learning flow again to export the round afresh")
    index = ctx.pool.index_of()
    labels = {}
    for image_id, label in imported.labels.items():
        if image_id not in index:
            raise DataError(f"{path}: image {image_id} is not in the pool")
        labels[index[image_id]] = _resize_nearest(label, ctx.pool.arrays.hw)
    ignore = ctx.classes.ignore_index
    labelled = {}
    for u in selection.units:
        have = labels.get(u.image_index)
        if have is None:
            continue
        unit = (ctx.pool.regions[u.image_index] == u.region_id
                if u.region_id >= 0 and ctx.pool.regions is not None else True)
        labelled[(u.image_index, u.region_id)] = int(((have != ignore) & unit).sum())
    extra = {"imported": {"units_labelled": imported.units_labelled,
                          "units_empty": imported.units_empty,
                          "labelled_pixels_original_size": imported.labelled_pixels,
                          "earlier_round_tasks_skipped": imported.skipped_tasks}}
    info = commit_labels(ctx, n, selection, labels, strategy, "human",
                         ctx.work_dir(n) / "scores.parquet", labelled, extra)
    return info, imported.skipped_tasks


def export_pending(ctx: ALContext, out: Path | None = None) -> Path:
    """The pending round's task folder, copied to ``out`` if given."""
    import shutil

    n = next_round_number(ctx.ws)
    folder = ctx.work_dir(n) / TASKS
    if not (folder / "selection.json").is_file():
        raise DataError(f"round {n} has no pending selection in {folder}: run the "
                        "active_learning flow with active.annotator: human to select it")
    read_selection(folder / "selection.json")  # refuse a modified selection early
    if out is None:
        return folder
    shutil.copytree(folder, out, dirs_exist_ok=True)
    return out
