from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from segloop.data import rle
from segloop.data.classes import CAMVID, ClassSpec
from segloop.data.images import write_label_png
from segloop.errors import ConfigError, DataError
from segloop.labeling import (
    detect_format,
    export_coco,
    export_labelstudio,
    import_labels,
    mask_to_rle,
    write_selection,
)

from .conftest import assign, image_level_labels

# -- the simulated person ----------------------------------------------------------------


def coco_person(sel, path: Path) -> Path:
    """Give every 'to-label' annotation the class ``assign`` picks (None: leave it)."""
    doc = json.loads(export_coco(sel, path).read_text())
    for k, ann in enumerate(doc["annotations"]):
        if assign(k) is not None:
            ann["category_id"] = assign(k) + 1
    path.write_text(json.dumps(doc))
    return path


def ls_person(sel, path: Path, spec=None) -> Path:
    """Turn each task's prediction into an annotation with the classes ``assign`` picks."""
    names = (spec or ClassSpec(classes=list(sel.classes))).names
    tasks = json.loads(export_labelstudio(sel, path).read_text())
    k = 0
    for t, task in enumerate(tasks):
        task["id"] = 100 + t
        result = json.loads(json.dumps(task["predictions"][0]["result"]))
        for r in result:
            if assign(k) is not None:
                r["value"]["brushlabels"] = [names[assign(k)]]
            k += 1
        task["annotations"] = [{"id": t + 1, "was_cancelled": False, "result": result,
                                "created_at": "2025-01-05T12:00:00.000000Z"}]
    path.write_text(json.dumps(tasks))
    return path


def edit_json(path: Path, edit) -> Path:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return path


def counts(sel) -> tuple[int, int]:
    labelled = sum(assign(k) is not None for k in range(len(sel.units)))
    return labelled, len(sel.units) - labelled


# -- full round trips --------------------------------------------------------------------


@pytest.mark.parametrize("person", [coco_person, ls_person])
@pytest.mark.parametrize("which", ["region_sel", "image_sel"])
def test_round_trip(tmp_path, request, spec, expected, person, which) -> None:
    sel = request.getfixturevalue(which)
    path = person(sel, tmp_path / "finished.json")
    assert detect_format(path) == ("coco" if person is coco_person else "labelstudio")
    got = import_labels(path, sel, spec)
    want = expected(sel)
    assert list(got.labels) == list(sel.images)
    for sid in want:
        assert got.labels[sid].dtype == np.uint8
        np.testing.assert_array_equal(got.labels[sid], want[sid])
    assert (got.units_labelled, got.units_empty) == counts(sel)
    assert got.labelled_pixels == sum(int((m != 255).sum()) for m in want.values())


def test_round_trip_camvid_ignore_id(tmp_path, region_sel) -> None:
    sel = replace(region_sel, classes=CAMVID.names, ignore_index=CAMVID.ignore_index)
    got = import_labels(ls_person(sel, tmp_path / "f.json", CAMVID), sel, CAMVID)
    u = sel.units[0]
    assert (got.labels[u.image_id][~sel.selected_mask(u.image_id)] == 11).all()
    assert (got.labels[u.image_id][u.mask] == 0).all()  # assign(0) == 0: sky


def test_png_folder_image_round(tmp_path, image_sel, spec) -> None:
    want = image_level_labels(image_sel)
    folder = tmp_path / "pngs"
    for k, (sid, lab) in enumerate(want.items()):
        entry = image_sel.images[sid]
        name = [f"{sid}.png", entry.name, f"{Path(entry.name).stem}.png"][k % 3]
        write_label_png(str(folder / name), lab)
    (folder / "notes.txt").write_text("ignored")
    assert detect_format(folder) == "png"
    got = import_labels(folder, image_sel, spec)
    for sid, lab in want.items():
        np.testing.assert_array_equal(got.labels[sid], lab)
    assert (got.units_labelled, got.units_empty) == (3, 0)
    assert got.labelled_pixels == sum(int((m != 255).sum()) for m in want.values())


def test_png_folder_region_round(tmp_path, region_sel, spec, expected) -> None:
    want = expected(region_sel)
    for sid, lab in want.items():
        write_label_png(str(tmp_path / f"{sid}.png"), lab)
    got = import_labels(tmp_path, region_sel, spec)
    assert (got.units_labelled, got.units_empty) == counts(region_sel)


def test_empty_image_in_region_round_is_allowed(tmp_path, region_sel, spec) -> None:
    path = coco_person(region_sel, tmp_path / "c.json")
    edit_json(path, lambda d: [a.__setitem__("category_id", 0) for a in d["annotations"]])
    got = import_labels(path, region_sel, spec)
    assert (got.units_labelled, got.units_empty, got.labelled_pixels) == (
        0, len(region_sel.units), 0)


# -- refusals ----------------------------------------------------------------------------


def refuse(path, sel, spec, *patterns: str) -> str:
    with pytest.raises(DataError) as info:
        import_labels(path, sel, spec)
    message = str(info.value)
    assert str(path) in message
    for p in patterns:
        assert re.search(p, message), (p, message)
    return message


def test_refuses_another_rounds_coco(tmp_path, region_sel, spec) -> None:
    other = replace(region_sel, round=4)
    path = coco_person(other, tmp_path / "c.json")
    refuse(path, region_sel, spec, "this is round 4's file, but round 3 is the one waiting",
           "import the file exported for round 3", "segloop labels export")


def test_refuses_a_region_outside_naming_the_label_studio_task(tmp_path, region_sel,
                                                               spec) -> None:
    path = ls_person(region_sel, tmp_path / "t.json")

    def stroke_outside(doc):  # type: ignore[no-untyped-def]
        task = doc[0]
        task["id"] = 417
        result = task["annotations"][0]["result"][0]
        h, w = result["original_height"], result["original_width"]
        everywhere = np.ones((h, w), dtype=bool)
        result["value"]["rle"] = mask_to_rle(everywhere)
        result["value"]["brushlabels"] = [region_sel.classes[0]]

    refuse(edit_json(path, stroke_outside), region_sel, spec,
           "Label Studio task 417, image", "outside the selected regions")


def test_refuses_tampered_digest_ls(tmp_path, region_sel, spec) -> None:
    path = ls_person(region_sel, tmp_path / "t.json")
    edit_json(path, lambda d: d[1]["data"].__setitem__("segloop_digest", "ab" * 32))
    refuse(path, region_sel, spec, "b1b1b1b1b1b1b1b1", "selection digest abababababab")


def test_refuses_other_round_ls_without_digest(tmp_path, region_sel, spec) -> None:
    path = ls_person(region_sel, tmp_path / "t.json")

    def edit(d):
        d[0]["data"].pop("segloop_digest")
        d[0]["data"]["segloop_round"] = 4

    refuse(edit_json(path, edit), region_sel, spec, "exported for round 4, not round 3")

    def earlier(d):
        d[0]["data"]["segloop_round"] = 2  # an earlier round's task: skipped, so missing

    refuse(edit_json(path, earlier), region_sel, spec, "1 of the 3 images of round 3 are "
           "missing", "1 task.s. in the file were exported for earlier rounds and skipped")


def test_refuses_image_not_in_selection(tmp_path, region_sel, image_sel, spec) -> None:
    coco = coco_person(region_sel, tmp_path / "c.json")
    edit_json(coco, lambda d: d["images"].append(
        {"id": 50, "file_name": "pool/elsewhere.png", "height": 4, "width": 4}))
    refuse(coco, region_sel, spec, "'pool/elsewhere.png' is not in round 3's selection",
           "remove it from the file")

    ls = ls_person(region_sel, tmp_path / "t.json")
    edit_json(ls, lambda d: d.append(dict(d[0], data=dict(d[0]["data"], segloop_image_id="zz"))))
    refuse(ls, region_sel, spec, "'zz' is not in round 3's selection")

    folder = tmp_path / "pngs"
    for sid, lab in image_level_labels(image_sel).items():
        write_label_png(str(folder / f"{sid}.png"), lab)
    write_label_png(str(folder / "stranger.png"), np.zeros((2, 2), np.uint8))
    refuse(folder, image_sel, spec, "stranger", "not in round 1's selection")


def test_refuses_missing_images(tmp_path, region_sel, image_sel, spec) -> None:
    coco = coco_person(region_sel, tmp_path / "c.json")

    def drop(d):
        d["images"] = d["images"][:1]
        d["annotations"] = [a for a in d["annotations"] if a["image_id"] == 1]

    refuse(edit_json(coco, drop), region_sel, spec, "2 of the 3 images of round 3 are missing",
           "b1b1b1b1b1b1b1b1 \\(street_b.jpg\\)", "c2c2c2c2c2c2c2c2", "export every task")

    ls = ls_person(region_sel, tmp_path / "t.json")
    refuse(edit_json(ls, lambda d: d.pop(0)), region_sel, spec, "1 of the 3 images",
           "a0a0a0a0a0a0a0a0")

    folder = tmp_path / "pngs"
    folder.mkdir()
    refuse(folder, image_sel, spec, "3 of the 3 images of round 1 are missing")


def test_refuses_wrong_sizes(tmp_path, region_sel, image_sel, spec) -> None:
    coco = coco_person(region_sel, tmp_path / "c.json")
    edit_json(coco, lambda d: d["images"][0].__setitem__("height", 24))
    refuse(coco, region_sel, spec, "a0a0a0a0a0a0a0a0", "labelled at 24x16", "12x16",
           "do not resize")

    coco = coco_person(region_sel, tmp_path / "c2.json")
    big = rle.encode(np.ones((24, 32), bool))
    edit_json(coco, lambda d: d["annotations"][0].__setitem__("segmentation", big))
    refuse(coco, region_sel, spec, "labelled at 24x32")

    ls = ls_person(region_sel, tmp_path / "t.json")

    def resize(d):
        r = d[0]["annotations"][0]["result"][0]
        r["original_width"], r["original_height"] = 32, 24
        r["value"]["rle"] = mask_to_rle(np.ones((24, 32), bool))

    refuse(edit_json(ls, resize), region_sel, spec, "a0a0a0a0a0a0a0a0", "labelled at 24x32")

    folder = tmp_path / "pngs"
    for k, (sid, lab) in enumerate(image_level_labels(image_sel).items()):
        write_label_png(str(folder / f"{sid}.png"), np.pad(lab, 1) if k == 1 else lab)
    refuse(folder, image_sel, spec, "1d1d1d1d1d1d1d1d.png is 7x9", "pool/frame_1.png")


def test_refuses_unknown_classes(tmp_path, region_sel, image_sel, spec) -> None:
    coco = coco_person(region_sel, tmp_path / "c.json")

    def tree(d):
        d["categories"].append({"id": 4, "name": "tree"})
        d["annotations"][2]["category_id"] = 4

    refuse(edit_json(coco, tree), region_sel, spec, "a0a0a0a0a0a0a0a0", "'tree'",
           "not a class of the spec", "add the class to data.classes")

    coco = coco_person(region_sel, tmp_path / "c2.json")
    edit_json(coco, lambda d: d["annotations"][2].__setitem__("category_id", 42))
    refuse(coco, region_sel, spec, "category_id 42")

    ls = ls_person(region_sel, tmp_path / "t.json")
    edit_json(ls, lambda d: d[1]["annotations"][0]["result"][0]["value"].__setitem__(
        "brushlabels", ["tree"]))
    refuse(ls, region_sel, spec, "b1b1b1b1b1b1b1b1", "labelled 'tree'", "not a class")

    folder = tmp_path / "pngs"
    for sid, lab in image_level_labels(image_sel).items():
        lab[-1, -1] = 7
        write_label_png(str(folder / f"{sid}.png"), lab)
    refuse(folder, image_sel, spec, "label ids 7 are not in the class spec")


def test_refuses_pixels_outside_the_units(tmp_path, region_sel, spec) -> None:
    a = region_sel.units[0]
    grown = a.mask.copy()
    grown[4, 0:2] = True  # two pixels below the selected superpixel

    coco = coco_person(region_sel, tmp_path / "c.json")
    edit_json(coco, lambda d: d["annotations"][0].__setitem__("segmentation", rle.encode(grown)))
    refuse(coco, region_sel, spec, "image 'a0a0a0a0a0a0a0a0' \\(street_a.png\\) has 2 labelled "
           "pixels outside the selected regions", "x 0..1, y 4..4", "regions 0, 5, 7",
           "erase the labels outside them")

    ls = ls_person(region_sel, tmp_path / "t.json")
    edit_json(ls, lambda d: d[0]["annotations"][0]["result"][0]["value"].__setitem__(
        "rle", mask_to_rle(grown)))
    refuse(ls, region_sel, spec, "2 labelled pixels outside")

    folder = tmp_path / "pngs"
    for sid in region_sel.images:
        e = region_sel.images[sid]
        write_label_png(str(folder / f"{sid}.png"), np.full((e.height, e.width), 2, np.uint8))
    refuse(folder, region_sel, spec, "labelled pixels outside the selected regions")


def test_refuses_mismatched_class_spec(tmp_path, region_sel) -> None:
    path = coco_person(region_sel, tmp_path / "c.json")
    with pytest.raises(ConfigError, match="exported with classes"):
        import_labels(path, region_sel, CAMVID)


def test_refuses_unrecognised_files(tmp_path, region_sel, spec) -> None:
    sel_file = write_selection(region_sel, tmp_path / "round")
    refuse(sel_file, region_sel, spec, "selection.json, not labels")
    odd = tmp_path / "odd.json"
    odd.write_text('{"tasks": []}')
    refuse(odd, region_sel, spec, "cannot tell the label format")
    jpgs = tmp_path / "jpgs"
    jpgs.mkdir()
    (jpgs / "a0a0a0a0a0a0a0a0.jpg").write_bytes(b"x")
    refuse(jpgs, region_sel, spec, "save label maps as single-channel PNG")


def test_refuses_duplicate_tasks(tmp_path, region_sel, spec) -> None:
    ls = ls_person(region_sel, tmp_path / "t.json")
    edit_json(ls, lambda d: d.append(dict(d[0], id=999)))
    refuse(ls, region_sel, spec, "appears in two tasks \\(100 and 999\\)")


def test_refuses_other_round_coco_without_digest(tmp_path, region_sel, spec) -> None:
    path = coco_person(region_sel, tmp_path / "c.json")

    def edit(d):
        d["segloop"].pop("selection_digest")
        d["segloop"]["round"] = 2

    refuse(edit_json(path, edit), region_sel, spec, "exported for round 2, not round 3")
