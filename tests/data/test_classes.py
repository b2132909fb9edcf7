from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from segloop.data.classes import (
    BUILTIN_CLASSES,
    CAMVID,
    ClassInfo,
    ClassSpec,
    resolve_classes,
)
from segloop.errors import DataError


def spec(*names: str, ignore: int = 255) -> ClassSpec:
    return ClassSpec(
        classes=tuple(ClassInfo(name=n, id=i) for i, n in enumerate(names)), ignore_index=ignore
    )


def test_camvid_builtin() -> None:
    assert CAMVID.num_classes == 11
    assert CAMVID.ignore_index == 11
    assert CAMVID.names == (
        "sky", "building", "pole", "road", "pavement", "tree",
        "signsymbol", "fence", "car", "pedestrian", "bicyclist",
    )  # fmt: skip
    palette = CAMVID.colors
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert tuple(palette[0]) == (128, 128, 128)
    assert tuple(palette[3]) == (128, 64, 128)
    assert tuple(palette[4]) == (60, 40, 222)
    assert tuple(palette[10]) == (0, 128, 192)
    assert tuple(palette[11]) == (0, 0, 0)
    assert BUILTIN_CLASSES["camvid"] is CAMVID


def test_ids_in_any_order_and_names_by_id() -> None:
    s = ClassSpec(classes=(ClassInfo(name="b", id=1), ClassInfo(name="a", id=0)))
    assert s.names == ("a", "b")
    assert s.ignore_index == 255


def test_names_only_list_assigns_ids() -> None:
    s = ClassSpec.model_validate({"classes": ["background", "cat", "dog"], "ignore_index": 7})
    assert s.names == ("background", "cat", "dog")
    assert s.by_id[2].name == "dog"


def test_auto_colors_are_distinct_and_ignore_black() -> None:
    s = spec("a", "b", "c", "d", ignore=200)
    palette = s.colors
    colors = {tuple(palette[i]) for i in range(4)}
    assert len(colors) == 4 and (0, 0, 0) not in colors
    assert tuple(palette[200]) == (0, 0, 0)


def test_frozen_and_extra_forbid() -> None:
    with pytest.raises(ValidationError):
        CAMVID.ignore_index = 3  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        ClassSpec.model_validate({"classes": ["a", "b"], "ignore": 3})


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"classes": [{"name": "a", "id": 0}]}, "at least 2 classes"),
        ({"classes": [{"name": "a", "id": 0}, {"name": "b", "id": 0}]}, "duplicated: [0]"),
        ({"classes": [{"name": "a", "id": 0}, {"name": "b", "id": 2}]}, "missing: [1]"),
        ({"classes": [{"name": "a", "id": 0}, {"name": "a", "id": 1}]}, "repeated: ['a']"),
        ({"classes": ["a", "b"], "ignore_index": 300}, "ignore_index 300 is outside 0..255"),
        ({"classes": ["a", "b"], "ignore_index": 1}, "also the id of class 'b'"),
        ({"classes": [{"name": "a", "id": 0, "color": [0, 0, 256]}, "b"]}, "colour"),
        ({"classes": [{"name": " ", "id": 0}, {"name": "b", "id": 1}]}, "must not be empty"),
        ({"classes": [{"name": "a", "id": -1}, {"name": "b", "id": 0}]}, "outside 0..254"),
    ],
)
def test_bad_specs(data: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        ClassSpec.model_validate(data)
    assert needle in str(info.value)
    with pytest.raises(DataError) as info2:
        resolve_classes(data)
    assert needle in str(info2.value)


def test_resolve_classes() -> None:
    assert resolve_classes("camvid") is CAMVID
    assert resolve_classes(" CamVid ") is CAMVID
    s = spec("x", "y")
    assert resolve_classes(s) is s
    assert resolve_classes({"classes": ["x", "y"]}).names == ("x", "y")


def test_resolve_unknown_name_lists_builtins() -> None:
    with pytest.raises(DataError, match=r"'cityscapes'.*\['camvid', 'voc'\]"):
        resolve_classes("cityscapes")
    with pytest.raises(DataError, match="int"):
        resolve_classes(3)  # type: ignore[arg-type]


def test_check_label_accepts_classes_and_ignore() -> None:
    label = np.array([[0, 10], [11, 5]], dtype=np.uint8)
    CAMVID.check_label(label, "x.png")
    CAMVID.check_label(label.astype(np.int64), "x.png")


def test_check_label_lists_bad_ids() -> None:
    label = np.array([[0, 12], [200, 5]], dtype=np.uint8)
    with pytest.raises(DataError) as info:
        CAMVID.check_label(label, "label lab.png")
    msg = str(info.value)
    assert "lab.png" in msg and "12, 200" in msg
    assert "0..10" in msg and "ignore id 11" in msg
    assert "fix the label file or add the classes to data.classes" in msg


def test_check_label_caps_the_list() -> None:
    label = np.arange(256, dtype=np.uint8).reshape(16, 16)
    with pytest.raises(DataError, match=r"12, 13, 14, 15, 16, 17, 18, 19, 20, 21 and 234 more"):
        CAMVID.check_label(label, "big.png")


def test_check_label_negative_and_shape() -> None:
    with pytest.raises(DataError, match="-1"):
        CAMVID.check_label(np.array([[-1, 0]]), "neg")
    with pytest.raises(DataError, match=r"\(H, W\) integer"):
        CAMVID.check_label(np.zeros((2, 2, 3), np.uint8), "rgb")
    with pytest.raises(DataError, match="float"):
        CAMVID.check_label(np.zeros((2, 2), np.float32), "float")
