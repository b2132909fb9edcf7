from __future__ import annotations

import pytest

from segloop.config import parse_config
from segloop.data.classes import resolve_classes
from segloop.errors import ConfigError
from segloop.pseudolabel.label_mapping import ABSTAIN, map_labels, sam_clip_labels


def test_labels_map_by_name_case_insensitively_or_by_class_map() -> None:
    camvid = resolve_classes("camvid")
    m = map_labels(["Car", "person"], camvid, {"person": "pedestrian"}, "auto")
    assert m.class_ids.tolist() == [8, 9]
    assert m.background is None and m.fill == ABSTAIN  # CamVid has no background class
    assert m.to_dict()["labels"]["person"] == {"id": 9, "class": "pedestrian"}


def test_background_auto_named_and_errors() -> None:
    voc = resolve_classes("voc")
    assert map_labels(["cat", "dog"], voc, {}, "auto").fill == 0
    assert map_labels(["cat", "dog"], voc, {}, None).fill == ABSTAIN
    camvid = resolve_classes("camvid")
    assert map_labels(["car", "tree"], camvid, {}, "road").fill == 3
    with pytest.raises(ConfigError, match="pseudolabel.background: 'grass' is not a class"):
        map_labels(["car"], camvid, {}, "grass")
    with pytest.raises(ConfigError, match="label 'forklift' has no class 'forklift'.*class_map"):
        map_labels(["car", "forklift"], camvid, {}, "auto")
    with pytest.raises(ConfigError, match=r"class_map: \['bus'\] are not labels"):
        map_labels(["car"], camvid, {"bus": "car"}, "auto")


def test_sam_clip_labels_fall_back_from_config_to_synth_to_data_classes() -> None:
    assert sam_clip_labels(parse_config({"pseudolabel": {"classes": ["car", "tree"]}})) == \
        ("car", "tree")
    assert sam_clip_labels(parse_config({"synth": {"classes": ["car", "sky"]}})) == \
        ("car", "sky")
    voc = sam_clip_labels(parse_config({"data": {"classes": "voc"}}))
    assert len(voc) == 20 and "background" not in voc and voc[0] == "aeroplane"
