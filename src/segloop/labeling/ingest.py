"""Import a person's finished labels for a round, refusing anything that does not fit.

:func:`import_labels` accepts, and tells apart by content:

* a COCO file (a JSON object with ``annotations``): :mod:`segloop.labeling.coco`;
* a Label Studio JSON export (a JSON list of tasks): :mod:`segloop.labeling.labelstudio`;
* a folder of single-channel PNG id maps named ``<image_id>.png`` or ``<name>.png``
  (the image's name, with or without its extension), ``ignore_index`` where unlabelled.

Then it validates strictly against the round's :class:`PendingSelection`: every selected
image present and no other, label maps at the original size, only class ids of the
spec, and no labelled pixel outside the selected units. A refusal is a
:class:`~segloop.errors.DataError` naming the file, the image, what is wrong and how to fix
it. Selected units the person left unlabelled are allowed and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segloop.data.classes import ClassSpec
from segloop.data.images import read_label
from segloop.errors import DataError
from segloop.labeling.checks import (
    ImageMatcher,
    check_classes,
    not_in_selection,
    short_list,
    wrong_size,
)
from segloop.labeling.coco import coco_labels_from_doc
from segloop.labeling.labelstudio import (
    earlier_round_tasks,
    labelstudio_labels_from_doc,
    labelstudio_task_ids,
)
from segloop.labeling.pending import FORMAT_NAME, PendingSelection
from segloop.labeling.selection_file import load_json

_NON_PNG_IMAGES = (".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


@dataclass
class ImportedLabels:
    """Validated labels of a round.

    ``labels``: image id -> (H, W) uint8 class ids at the original resolution,
    ``ignore_index`` outside the selected units (and wherever the person gave no label).
    ``units_labelled`` / ``units_empty``: selected units with at least one / no labelled
    pixel. ``labelled_pixels``: pixels holding a class id, over all images.
    ``skipped_tasks``: Label Studio tasks of earlier rounds in the file, not imported.
    """

    labels: dict[str, np.ndarray]
    units_labelled: int
    units_empty: int
    labelled_pixels: int
    skipped_tasks: int = 0


def detect_format(path: str | Path) -> str:
    """``"png"`` for a folder, else ``"coco"`` or ``"labelstudio"`` by the JSON's shape."""
    if Path(path).is_dir():
        return "png"
    return _json_format(load_json(str(path), "label file"), str(path))


def _json_format(doc: object, where: str) -> str:
    if isinstance(doc, dict) and doc.get("format") == FORMAT_NAME:
        raise DataError(f"{where} is the round's selection.json, not labels; pass the file "
                        "exported from the labelling tool")
    if isinstance(doc, dict) and "annotations" in doc:
        return "coco"
    if isinstance(doc, list):
        return "labelstudio"
    raise DataError(f"{where}: cannot tell the label format (neither a COCO object with "
                    "'annotations' nor a Label Studio list of tasks); export COCO or Label "
                    "Studio JSON, or pass a folder of PNG id maps")


def import_labels(path: str | Path, sel: PendingSelection, classes: ClassSpec) -> ImportedLabels:
    """Read a COCO file, Label Studio export or PNG folder and validate it against ``sel``."""
    check_classes(sel, classes)
    where = str(path)
    refs: dict[str, str] = {}
    skipped = 0
    if Path(where).is_dir():
        labels = read_png_labels(where, sel, classes)
    else:
        doc = load_json(where, "label file")
        if _json_format(doc, where) == "coco":
            labels = coco_labels_from_doc(doc, where, sel, classes)
        else:
            labels = labelstudio_labels_from_doc(doc, where, sel, classes)
            refs = labelstudio_task_ids(doc, sel)
            skipped = earlier_round_tasks(doc, sel)
    return validate_labels(labels, where, sel, classes, refs, skipped)


def read_png_labels(
    folder: str | Path, sel: PendingSelection, classes: ClassSpec
) -> dict[str, np.ndarray]:
    """Read a folder of PNG id maps (``<image_id>.png`` or ``<name>.png``)."""
    check_classes(sel, classes)
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"label folder {root} does not exist or is not a folder")
    matcher = ImageMatcher(sel)
    labels: dict[str, np.ndarray] = {}
    file_of: dict[str, str] = {}
    for path in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        suffix = path.suffix.lower()
        if suffix in _NON_PNG_IMAGES:
            raise DataError(f"label {path} is a {suffix} file; save label maps as single-channel "
                            "PNG id maps (lossy formats change class ids at edges)")
        if suffix != ".png":
            continue
        sid = matcher.match(None, [path.name])
        if sid is None:
            raise not_in_selection(str(path), path.stem, sel)
        if sid in labels:
            raise DataError(f"{root}: {file_of[sid]} and {path.name} are both labels of image "
                            f"{sid!r}; keep one (name it {sid}.png)")
        entry = sel.images[sid]
        labels[sid] = read_label(str(path), classes, (entry.height, entry.width),
                                 image_url=entry.image_uri)
        file_of[sid] = path.name
    return labels


def validate_labels(
    labels: dict[str, np.ndarray], where: str, sel: PendingSelection, classes: ClassSpec,
    refs: dict[str, str] | None = None, skipped: int = 0,
) -> ImportedLabels:
    """Check label maps against the selection and count what was labelled; ``refs`` names
    each image as the labelling tool does (e.g. its Label Studio task) in messages;
    ``skipped``: tasks of earlier rounds the reader left out."""
    check_classes(sel, classes)
    for sid in labels:
        if sid not in sel.images:
            raise not_in_selection(where, sid, sel)
    missing = [sid for sid in sel.images if sid not in labels]
    if missing:
        names = [f"{sid} ({sel.images[sid].name})" for sid in missing]
        raise DataError(
            f"{where}: {len(missing)} of the {len(sel.images)} images of round {sel.round} are "
            f"missing: {short_list(names)}; export every task of the round (units left "
            "unlabelled are fine and get reported)"
            + (f"; {skipped} task(s) in the file were exported for earlier rounds and "
               "skipped" if skipped else "")
        )
    out: dict[str, np.ndarray] = {}
    units_labelled = units_empty = pixels = 0
    for sid, entry in sel.images.items():
        label = np.asarray(labels[sid])
        if label.shape != (entry.height, entry.width):
            raise wrong_size(where, sid, label.shape[:2] if label.ndim >= 2 else (0, 0), sel)
        classes.check_label(label, where=f"{where}: image {sid!r}")
        label = label.astype(np.uint8)
        labelled = label != classes.ignore_index
        _check_inside(labelled, sel.selected_mask(sid), where, sel, sid, (refs or {}).get(sid))
        for unit in sel.units_of(sid):
            if (labelled & unit.pixel_mask()).any():
                units_labelled += 1
            else:
                units_empty += 1
        pixels += int(labelled.sum())
        out[sid] = np.ascontiguousarray(label)
    return ImportedLabels(out, units_labelled, units_empty, pixels, skipped)


def _check_inside(labelled: np.ndarray, selected: np.ndarray, where: str,
                  sel: PendingSelection, sid: str, ref: str | None = None) -> None:
    outside = labelled & ~selected
    if not outside.any():
        return
    ys, xs = np.nonzero(outside)
    regions = [u.region_id for u in sel.units_of(sid)]
    raise DataError(
        f"{where}: {ref + ', ' if ref else ''}image {sid!r} ({sel.images[sid].name}) has "
        f"{ys.size} labelled pixels "
        f"outside the selected regions (x {xs.min()}..{xs.max()}, y {ys.min()}..{ys.max()}); "
        f"round {sel.round} asked only for regions {short_list(regions)}: give those regions "
        "their classes, erase the labels outside them and export again"
    )
