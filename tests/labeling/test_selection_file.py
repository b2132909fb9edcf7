from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from segloop.errors import DataError
from segloop.labeling import (
    PendingSelection,
    TaskUnit,
    read_selection,
    selection_digest,
    write_selection,
)
from segloop.labeling.selection_file import canonical_json


def test_round_trip(tmp_path, region_sel, image_sel) -> None:
    for sel in (region_sel, image_sel):
        path = write_selection(sel, tmp_path / sel.level)
        assert path == tmp_path / sel.level / "selection.json"
        doc = json.loads(path.read_text())
        assert doc["digest"] == selection_digest(sel)
        assert not list(path.parent.glob(".*tmp*"))  # atomic write left nothing behind
        back = read_selection(path)
        assert back == sel
        assert selection_digest(back) == selection_digest(sel)
        assert read_selection(path.parent) == sel  # the folder works too
        for a, b in zip(back.units, sel.units, strict=True):
            if b.mask is None:
                assert a.mask is None
            else:
                np.testing.assert_array_equal(a.mask, b.mask)
                assert a.mask.dtype == bool and not a.mask.flags.writeable


def test_digest_is_canonical_json_of_the_rest(tmp_path, region_sel) -> None:
    import hashlib

    doc = json.loads(write_selection(region_sel, tmp_path).read_text())
    digest = doc.pop("digest")
    assert digest == hashlib.sha256(canonical_json(doc)).hexdigest()
    assert b" " not in canonical_json(doc)


def test_reformatting_keeps_the_digest(tmp_path, region_sel) -> None:
    path = write_selection(region_sel, tmp_path)
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(dict(reversed(list(doc.items()))), indent=4))
    assert read_selection(path) == region_sel


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.__setitem__("round", 4),
        lambda d: d["classes"].__setitem__(1, "street"),
        lambda d: d["units"][0].__setitem__("region_id", 1),
        lambda d: d["units"][1]["mask"].__setitem__("counts", d["units"][0]["mask"]["counts"]),
        lambda d: d["units"].pop(),
        lambda d: d.__setitem__("digest", "0" * 64),
        lambda d: d.pop("digest"),
    ],
)
def test_tampering_is_detected(tmp_path, region_sel, edit) -> None:
    path = write_selection(region_sel, tmp_path)
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="selection.json was modified after export: re-export"):
        read_selection(path)


def test_digest_sees_a_single_pixel(region_sel) -> None:
    unit = region_sel.units[0]
    mask = unit.mask.copy()
    mask[-1, -1] = True
    other = replace(region_sel, units=(replace(unit, mask=mask), *region_sel.units[1:]))
    assert selection_digest(other) != selection_digest(region_sel)
    assert other != region_sel


def test_not_a_selection_and_newer_version(tmp_path, region_sel) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="not a segloop selection file"):
        read_selection(bad)
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_selection(bad)
    with pytest.raises(DataError, match="not found"):
        read_selection(tmp_path / "missing.json")
    path = write_selection(region_sel, tmp_path / "v")
    doc = json.loads(path.read_text())
    doc["version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="upgrade segloop"):
        read_selection(path)


def _unit(**kw) -> TaskUnit:
    args = dict(image_id="i", name="n.png", image_uri="u/n.png", region_id=0, height=2, width=3,
                mask=np.array([[1, 0, 0], [0, 0, 1]], bool))
    args.update(kw)
    return TaskUnit(**args)


def test_unit_validation() -> None:
    assert _unit(mask=np.array([[1, 0, 0], [0, 0, 1]], np.uint8)).mask.dtype == bool
    with pytest.raises(DataError, match="original size"):
        _unit(mask=np.ones((3, 2), bool))
    with pytest.raises(DataError, match="empty"):
        _unit(mask=np.zeros((2, 3), bool))
    with pytest.raises(DataError, match="takes mask=None"):
        _unit(region_id=-1)
    with pytest.raises(DataError, match="needs its"):
        _unit(mask=None)
    with pytest.raises(DataError, match="bool"):
        _unit(mask=np.full((2, 3), 0.5))
    whole = _unit(region_id=-1, mask=None)
    assert whole.is_whole_image and whole.pixel_mask().all()
    assert hash(_unit()) == hash(_unit())


def test_selection_validation() -> None:
    kw = dict(round=0, strategy="s", classes=["a", "b"], ignore_index=255)
    with pytest.raises(DataError, match="image rounds hold whole images only"):
        PendingSelection(level="image", units=(_unit(),), **kw)
    with pytest.raises(DataError, match="selected twice"):
        PendingSelection(level="region", units=(_unit(), _unit()), **kw)
    with pytest.raises(DataError, match="disagree"):
        PendingSelection(level="region", units=(_unit(), _unit(region_id=1, name="m.png")), **kw)
    with pytest.raises(DataError, match="level"):
        PendingSelection(level="pixel", units=(), **kw)
    with pytest.raises(DataError, match="ignore_index"):
        PendingSelection(level="region", units=(), **{**kw, "ignore_index": 1})
    sel = PendingSelection(level="region", units=[_unit(), _unit(region_id=-1, mask=None)], **kw)
    assert isinstance(sel.units, tuple) and sel.classes == ("a", "b")
    assert sel.selected_mask("i").all()
