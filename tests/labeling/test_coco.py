from __future__ import annotations

import json

import numpy as np
import pytest

from segloop.data import rle
from segloop.errors import DataError
from segloop.labeling import export_coco, read_coco_labels, selection_digest

from .conftest import POLYGON, polygon_mask


def test_export_structure(tmp_path, region_sel) -> None:
    path = export_coco(region_sel, tmp_path / "coco.json")
    doc = json.loads(path.read_text())
    entries = list(region_sel.images.values())
    assert [im["id"] for im in doc["images"]] == list(range(1, len(entries) + 1))
    for im, e in zip(doc["images"], entries, strict=True):
        assert (im["file_name"], im["height"], im["width"], im["segloop_image_id"]) == (
            e.image_uri, e.height, e.width, e.image_id)
    cats = {c["name"]: c["id"] for c in doc["categories"]}
    assert cats == {"to-label": 0, "background": 1, "road": 2, "car": 3}  # class id + 1
    assert doc["segloop"]["round"] == 3
    assert doc["segloop"]["selection_digest"] == selection_digest(region_sel)
    assert "category_id" in doc["segloop"]["task"]
    assert len(doc["annotations"]) == len(region_sel.units)
    image_of = {im["id"]: im["segloop_image_id"] for im in doc["images"]}
    ids = [a["id"] for a in doc["annotations"]]
    assert len(set(ids)) == len(ids)
    for ann, unit in zip(doc["annotations"], region_sel.units, strict=True):
        assert image_of[ann["image_id"]] == unit.image_id
        assert ann["category_id"] == 0 and ann["iscrowd"] == 0
        assert ann["segloop_region_id"] == unit.region_id
        assert isinstance(ann["segmentation"]["counts"], str)
        np.testing.assert_array_equal(rle.decode(ann["segmentation"]), unit.mask)
        assert ann["area"] == int(unit.mask.sum())
        ys, xs = np.nonzero(unit.mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                               ys.max() - ys.min() + 1]


def test_whole_images_get_full_masks(tmp_path, image_sel) -> None:
    doc = json.loads(export_coco(image_sel, tmp_path / "c.json").read_text())
    for ann in doc["annotations"]:
        assert ann["segloop_region_id"] == -1
        assert rle.decode(ann["segmentation"]).all()


def test_pycocotools_reads_the_export(tmp_path, region_sel, capsys) -> None:
    from pycocotools.coco import COCO

    coco = COCO(str(export_coco(region_sel, tmp_path / "c.json")))
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) == len(region_sel.units)


def _finished(tmp_path, sel, edit) -> str:
    path = export_coco(sel, tmp_path / "c.json")
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return str(path)


def test_polygons_and_later_over_earlier(tmp_path, region_sel, spec) -> None:
    b = region_sel.units[3]  # image B, the polygon unit
    assert b.region_id == 3

    def edit(doc):
        img = next(i["id"] for i in doc["images"] if i["segloop_image_id"] == b.image_id)
        anns = [a for a in doc["annotations"] if a["image_id"] == img]
        anns[0]["segmentation"] = [POLYGON]  # polygon instead of RLE
        anns[0]["category_id"] = 3  # car
        # a later annotation over part of the polygon wins there
        part = b.mask & (np.arange(10)[None, :] < 4)
        doc["annotations"].append({"id": 99, "image_id": img, "category_id": 2, "iscrowd": 0,
                                   "segmentation": rle.encode(part)})

    labels = read_coco_labels(_finished(tmp_path, region_sel, edit), region_sel, spec)
    lab = labels[b.image_id]
    part = b.mask & (np.arange(10)[None, :] < 4)
    np.testing.assert_array_equal(polygon_mask(POLYGON, 10, 10), b.mask)
    assert (lab[part] == 1).all() and (lab[b.mask & ~part] == 2).all()
    assert (lab[~b.mask] == 255).all()


def test_categories_mapped_by_name_when_renumbered(tmp_path, region_sel, spec) -> None:
    def edit(doc):
        doc["categories"] = [{"id": 10, "name": "car"}, {"id": 11, "name": "road"},
                             {"id": 12, "name": "to-label"}]
        for a in doc["annotations"]:
            a["category_id"] = 10 if a["segloop_region_id"] == 0 else 12
        doc["annotations"][1]["category_id"] = 11

    labels = read_coco_labels(_finished(tmp_path, region_sel, edit), region_sel, spec)
    a = region_sel.units[0]
    assert (labels[a.image_id][a.mask] == 2).all()
    assert (labels[a.image_id][region_sel.units[1].mask] == 1).all()


def test_without_categories_ids_are_class_plus_one(tmp_path, region_sel, spec) -> None:
    def edit(doc):
        del doc["categories"]
        doc["annotations"][0]["category_id"] = 1

    labels = read_coco_labels(_finished(tmp_path, region_sel, edit), region_sel, spec)
    a = region_sel.units[0]
    assert (labels[a.image_id][a.mask] == 0).all()

    def bad(doc):
        del doc["categories"]
        doc["annotations"][0]["category_id"] = 4

    with pytest.raises(DataError, match="category_id 4, not a class of the spec"):
        read_coco_labels(_finished(tmp_path, region_sel, bad), region_sel, spec)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["annotations"][0].__setitem__("segmentation", [[1, 2, 3]]),
         "a polygon must be a flat list"),
        (lambda d: d["annotations"][0].__setitem__("segmentation", None),
         "has no segmentation"),
        (lambda d: d["annotations"][0]["segmentation"].__setitem__("counts", "zz"),
         "bad RLE segmentation"),
        (lambda d: d["annotations"][0].__setitem__("image_id", 77),
         "refers to image id 77"),
        (lambda d: d["images"].append(dict(d["images"][0], id=9)),
         "listed twice"),
        (lambda d: d.pop("images"), "is not a COCO file"),
    ],
)
def test_malformed_files(tmp_path, region_sel, spec, edit, message) -> None:
    def full(doc):
        doc["annotations"][0]["category_id"] = 1
        edit(doc)

    with pytest.raises(DataError, match=message):
        read_coco_labels(_finished(tmp_path, region_sel, full), region_sel, spec)


def test_images_matched_by_file_name_without_segloop_fields(tmp_path, region_sel, spec) -> None:
    def edit(doc):
        doc.pop("segloop")
        for im in doc["images"]:
            im.pop("segloop_image_id")
            im["file_name"] = im["file_name"].split("/")[-1]  # tools keep only the base name
        doc["annotations"][0]["category_id"] = 2

    labels = read_coco_labels(_finished(tmp_path, region_sel, edit), region_sel, spec)
    assert set(labels) == set(region_sel.images)
    a = region_sel.units[0]
    assert (labels[a.image_id][a.mask] == 1).all()


def test_label_studio_coco_export_is_recognised(tmp_path, region_sel, spec) -> None:
    # what Label Studio's COCO export of brush labels looks like: the masks are gone
    doc = {"images": [{"id": 0, "width": 10, "height": 10, "file_name": "images/a.png"}],
           "categories": [{"id": 0, "name": "car"}], "annotations": [],
           "info": {"year": 2026, "version": "1.0", "description": "",
                    "contributor": "Label Studio", "url": "", "date_created": "2026-11-27"}}
    path = tmp_path / "project-1-at-2026.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"Label Studio's COCO export.*Export -> JSON"):
        read_coco_labels(path, region_sel, spec)
