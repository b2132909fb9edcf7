"""COCO tasks for a round, and reading the finished COCO labels back.

Export (:func:`export_coco`) writes a COCO instances file any COCO-aware tool imports:

* ``images``: ids 1..n in selection order, ``file_name`` = the image URI, ``height``,
  ``width`` (original resolution) and ``segloop_image_id``.
* ``categories``: COCO reserves category id 0, so a class with segloop id ``k`` gets COCO
  id ``k + 1``. Id 0 is the placeholder category ``"to-label"``.
* ``annotations``: one per selected unit, ``category_id`` 0 ("to label"), ``segmentation``
  the unit's mask as COCO RLE (a whole-image unit gets a full mask), ``area``, ``bbox``
  ``[x, y, w, h]`` (x right, y down), ``iscrowd`` 0 and ``segloop_region_id``.
* ``segloop``: ``round``, ``selection_digest`` and a ``task`` sentence for the person.

The person gives each annotation its class (``category_id`` = class id + 1). Reading
(:func:`read_coco_labels`) maps categories by *name* when the file lists them (tools may
renumber categories on export) and falls back to the id + 1 convention otherwise.
Segmentations may be RLE (compressed or uncompressed) or polygons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from segloop.data import rle
from segloop.data.classes import ClassSpec
from segloop.errors import DataError
from segloop.labeling.checks import (
    ImageMatcher,
    check_classes,
    check_file_digest,
    not_in_selection,
    wrong_size,
)
from segloop.labeling.pending import TO_LABEL, PendingSelection
from segloop.labeling.selection_file import dump_json, load_json, selection_digest

TO_LABEL_CATEGORY_ID = 0
TASK_TEXT = (
    "Each annotation with category_id 0 ('to-label') is one region to label: set its "
    "category_id to the class it shows (COCO id = segloop class id + 1) and keep its "
    "segmentation; leave it at 0 if you cannot tell. Do not label pixels outside the "
    "given regions."
)


def export_coco(sel: PendingSelection, out_path: str | Path) -> Path:
    """Write the round's units as a COCO file of 'to-label' annotations; returns the path."""
    if not sel.units:
        raise DataError(f"round {sel.round} selected nothing; there is nothing to export")
    image_ids: dict[str, int] = {}
    images = []
    for n, entry in enumerate(sel.images.values(), start=1):
        image_ids[entry.image_id] = n
        images.append({
            "id": n, "file_name": entry.image_uri, "height": entry.height,
            "width": entry.width, "segloop_image_id": entry.image_id,
        })
    categories = [{"id": TO_LABEL_CATEGORY_ID, "name": TO_LABEL, "supercategory": "segloop"}]
    categories += [
        {"id": k + 1, "name": name, "supercategory": "class"} for k, name in enumerate(sel.classes)
    ]
    annotations = []
    for n, unit in enumerate(sel.units, start=1):
        seg = rle.encode(unit.pixel_mask())
        annotations.append({
            "id": n, "image_id": image_ids[unit.image_id], "category_id": TO_LABEL_CATEGORY_ID,
            "segmentation": seg, "area": rle.area(seg), "bbox": list(rle.bbox(seg)),
            "iscrowd": 0, "segloop_region_id": unit.region_id,
        })
    doc = {
        "info": {"description": f"segloop round {sel.round} ({sel.strategy}, {sel.level})",
                 "version": "1", "date_created": sel.created_at},
        "licenses": [],
        "images": images,
        "categories": categories,
        "annotations": annotations,
        "segloop": {"round": sel.round, "selection_digest": selection_digest(sel),
                    "task": TASK_TEXT},
    }
    dump_json(out_path, doc)
    return Path(out_path)


def read_coco_labels(
    path: str | Path, sel: PendingSelection, classes_spec: ClassSpec
) -> dict[str, np.ndarray]:
    """Paint a finished COCO file into label maps: image id -> (H, W) uint8.

    Only images listed in the file are returned; pixels no annotation covers are
    ``ignore_index``; later annotations paint over earlier ones. Raises DataError for
    images not in ``sel``, wrong sizes, unknown categories, bad segmentations or a
    ``segloop.selection_digest`` that is not ``sel``'s.
    """
    url = str(path)
    return coco_labels_from_doc(load_json(url, "COCO file"), url, sel, classes_spec)


def coco_labels_from_doc(
    doc: Any, where: str, sel: PendingSelection, spec: ClassSpec
) -> dict[str, np.ndarray]:
    """:func:`read_coco_labels` on an already parsed document (``where`` names it)."""
    check_classes(sel, spec)
    info = doc.get("info") if isinstance(doc, dict) else None
    if isinstance(info, dict) and str(info.get("contributor", "")).strip() == "Label Studio":
        raise DataError(f"{where} is Label Studio's COCO export, which leaves out brush masks "
                        "(the labels segloop's tasks ask for): in Label Studio choose Export -> "
                        "JSON (not COCO) and import that file")
    if not isinstance(doc, dict) or not all(
        isinstance(doc.get(k), list) for k in ("images", "annotations")
    ):
        raise DataError(f"{where} is not a COCO file (needs 'images' and 'annotations' lists); "
                        "export COCO instances (JSON) from the labelling tool")
    meta = doc.get("segloop")
    if isinstance(meta, dict):
        check_file_digest(meta.get("selection_digest"), sel, where,
                          found_round=meta.get("round"))
        if meta.get("selection_digest") is None and meta.get("round") not in (None, sel.round):
            raise DataError(f"{where} was exported for round {meta['round']}, not round "
                            f"{sel.round}; import the file of this round")
    file_to_sel = _match_images(doc["images"], where, sel)
    labels = {sid: np.full((sel.images[sid].height, sel.images[sid].width),
                           spec.ignore_index, dtype=np.uint8) for sid in file_to_sel.values()}
    categories = _category_map(doc.get("categories"), spec, where)
    for ann in doc["annotations"]:
        if not isinstance(ann, dict):
            raise DataError(f"{where}: an annotation is not an object: {str(ann)[:60]}")
        sid = file_to_sel.get(ann.get("image_id"))
        if sid is None:
            raise DataError(f"{where}: annotation {ann.get('id')} refers to image id "
                            f"{ann.get('image_id')!r} that the file's 'images' does not list; "
                            "export the complete COCO file")
        class_id = _class_of(ann, categories, spec, where, sid)
        if class_id is None:
            continue
        h, w = labels[sid].shape
        mask = _segmentation_mask(ann.get("segmentation"), h, w, f"{where}: image {sid!r}, "
                                  f"annotation {ann.get('id')}", sel, sid)
        labels[sid][mask] = class_id
    return labels


def _match_images(images: list[Any], where: str, sel: PendingSelection) -> dict[Any, str]:
    matcher = ImageMatcher(sel)
    out: dict[Any, str] = {}
    for img in images:
        if not isinstance(img, dict) or "id" not in img:
            raise DataError(f"{where}: an entry of 'images' has no id: {str(img)[:80]}")
        sid = matcher.match(img.get("segloop_image_id"),
                            [img.get("file_name"), img.get("coco_url"), img.get("path")])
        if sid is None:
            raise not_in_selection(where, img.get("segloop_image_id") or img.get("file_name"),
                                   sel)
        if sid in out.values() or img["id"] in out:
            raise DataError(f"{where}: image {sid!r} is listed twice in 'images'; keep one entry")
        entry = sel.images[sid]
        hw = (img.get("height", entry.height), img.get("width", entry.width))
        if hw != (entry.height, entry.width):
            raise wrong_size(where, sid, hw, sel)
        out[img["id"]] = sid
    return out


def _category_map(categories: Any, spec: ClassSpec, where: str) -> dict[Any, Any] | None:
    """COCO category id -> segloop class id, None (to-label) or a category name (unknown)."""
    if not categories:
        return None
    if not isinstance(categories, list):
        raise DataError(f"{where}: 'categories' must be a list")
    by_name = {c.name: c.id for c in spec.classes}
    out: dict[Any, Any] = {}
    for cat in categories:
        if not isinstance(cat, dict) or "id" not in cat:
            raise DataError(f"{where}: a category has no id: {str(cat)[:80]}")
        name = cat.get("name")
        if name == TO_LABEL:
            out[cat["id"]] = None
        elif name in by_name:
            out[cat["id"]] = by_name[name]
        else:
            out[cat["id"]] = ("unknown", name)
    return out


def _class_of(ann: dict[str, Any], categories: dict[Any, Any] | None, spec: ClassSpec,
              where: str, sid: str) -> int | None:
    cid = ann.get("category_id")
    fix = (f"use one of the classes {list(spec.names)} (COCO id = class id + 1) or "
           "add the class to data.classes and re-export the round")
    if categories is None:
        if cid == TO_LABEL_CATEGORY_ID:
            return None
        if isinstance(cid, int) and not isinstance(cid, bool) and 1 <= cid <= spec.num_classes:
            return cid - 1
        raise DataError(f"{where}: image {sid!r}, annotation {ann.get('id')} has category_id "
                        f"{cid!r}, not a class of the spec; {fix}")
    if cid not in categories:
        raise DataError(f"{where}: image {sid!r}, annotation {ann.get('id')} has category_id "
                        f"{cid!r} that 'categories' does not list; {fix}")
    found = categories[cid]
    if isinstance(found, tuple):
        raise DataError(f"{where}: image {sid!r}, annotation {ann.get('id')} is labelled "
                        f"{found[1]!r} (category {cid}), not a class of the spec; {fix}")
    return found


def _segmentation_mask(seg: Any, h: int, w: int, where: str, sel: PendingSelection,
                       sid: str) -> np.ndarray:
    """A COCO segmentation (RLE dict or polygon list) as (h, w) bool."""
    if isinstance(seg, dict):
        size = seg.get("size")
        if isinstance(size, list | tuple) and len(size) == 2 and tuple(size) != (h, w):
            raise wrong_size(where, sid, (size[0], size[1]), sel)
        try:
            return rle.decode(seg)
        except DataError as err:
            raise DataError(f"{where}: bad RLE segmentation: {err}") from err
    if isinstance(seg, list):
        polys = [p for p in seg if not (isinstance(p, list) and len(p) == 0)]
        if not polys:
            return np.zeros((h, w), dtype=bool)
        for p in polys:
            if (not isinstance(p, list) or len(p) < 6 or len(p) % 2
                    or not all(isinstance(v, int | float) and not isinstance(v, bool)
                               for v in p)):
                raise DataError(f"{where}: a polygon must be a flat list [x1, y1, x2, y2, ...] "
                                f"of >= 3 points, got {str(p)[:60]}; export polygons or RLE")
        merged = coco_mask.merge(coco_mask.frPyObjects([[float(v) for v in p] for p in polys],
                                                       h, w))
        return coco_mask.decode(merged).astype(bool)
    raise DataError(f"{where}: the annotation has no segmentation (got {str(seg)[:40]}); "
                    "segmentation labels need RLE or polygons, not boxes")
