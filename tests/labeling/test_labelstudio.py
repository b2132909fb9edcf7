from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from segloop.data.classes import CAMVID
from segloop.errors import ConfigError, DataError
from segloop.labeling import (
    decode_rle,
    encode_rle,
    export_labelstudio,
    import_labels,
    labeling_config,
    mask_to_rle,
    read_labelstudio_labels,
    rle_to_mask,
    selection_digest,
)

# label-studio-converter 0.0.59 brush.mask2rle(np.array([[0, 255, 255], [0, 0, 255]], uint8))
KNOWN_MASK = np.array([[0, 1, 1], [0, 0, 1]], bool)
KNOWN_RLE = [0, 0, 0, 24, 57, 27, 252, 96, 19, 255, 206, 1, 31, 248]


def _bits_to_bytes(bits: str) -> list[int]:
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]


def test_known_vector() -> None:
    assert mask_to_rle(KNOWN_MASK) == KNOWN_RLE
    np.testing.assert_array_equal(rle_to_mask(KNOWN_RLE, 2, 3), KNOWN_MASK)
    # The reference encoder pads a whole zero byte when the stream is byte-aligned.
    np.testing.assert_array_equal(rle_to_mask(KNOWN_RLE + [0], 2, 3), KNOWN_MASK)


def test_literal_records_as_the_frontend_writes_them() -> None:
    # num=5, word 8, sizes 3/4/8/16; literal x3 [1, 2, 3]; repeat x2 of 200.
    header = f"{5:032b}" + "00111" + "0010" + "0011" + "0111" + "1111"
    literal = "0" + "00" + "010" + "00000001" + "00000010" + "00000011"
    repeat = "1" + "00" + "001" + "11001000"
    np.testing.assert_array_equal(decode_rle(_bits_to_bytes(header + literal + repeat)),
                                  [1, 2, 3, 200, 200])


@pytest.mark.parametrize(
    "mask",
    [
        np.zeros((4, 5), bool),
        np.ones((4, 5), bool),
        np.ones((1, 1), bool),
        np.zeros((1, 1), bool),
        np.array([[1, 0, 1, 1, 0, 0, 0, 1]], bool),  # 1xN
        np.array([[0], [1], [1]], bool),  # Nx1
        np.ones((200, 100), bool),  # 80000 values: runs longer than 2**16
        np.eye(30, 70, dtype=bool),
    ],
)
def test_mask_round_trip_edges(mask) -> None:
    rle = mask_to_rle(mask)
    assert all(isinstance(v, int) and 0 <= v <= 255 for v in rle)
    np.testing.assert_array_equal(rle_to_mask(rle, *mask.shape), mask)
    flat = decode_rle(rle)
    assert flat.dtype == np.uint8 and flat.size == mask.size * 4
    np.testing.assert_array_equal(flat, np.repeat(mask.ravel().astype(np.uint8) * 255, 4))


def test_mask_round_trip_random() -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        h, w = rng.integers(1, 33, 2)
        mask = rng.random((h, w)) < rng.random()
        np.testing.assert_array_equal(rle_to_mask(mask_to_rle(mask), h, w), mask)


def test_value_round_trip_any_word_size() -> None:
    rng = np.random.default_rng(1)
    for word_size, sizes in [(8, (3, 4, 8, 16)), (3, (1, 2, 5, 9)), (12, (16, 2, 4, 8)),
                             (32, (3, 4, 8, 16))]:
        for _ in range(10):
            n = int(rng.integers(0, 60))
            values = np.repeat(rng.integers(0, 2**word_size, n, dtype=np.int64),
                               rng.integers(1, 700, n))
            back = decode_rle(encode_rle(values, word_size, sizes))
            np.testing.assert_array_equal(back, values)
    assert decode_rle(encode_rle(np.zeros(0, np.uint8))).size == 0


def test_bad_rle() -> None:
    rle = mask_to_rle(np.ones((3, 4), bool))
    with pytest.raises(DataError, match="truncated"):
        decode_rle(rle[:-2])
    with pytest.raises(DataError, match="another image size"):
        rle_to_mask(rle, 4, 3 + 1)
    with pytest.raises(DataError, match="byte values"):
        decode_rle([1, 300])
    with pytest.raises(DataError, match="values must be ints"):
        encode_rle(np.array([256]))
    # a run that claims more values than the header
    header = f"{2:032b}" + "00111" + "0010" + "0011" + "0111" + "1111"
    with pytest.raises(DataError, match="past its declared length"):
        decode_rle(_bits_to_bytes(header + "1" + "00" + "111" + "00000000"))


def test_crafted_rle_is_refused_before_allocating() -> None:
    import tracemalloc

    # claims 2**31 - 1 values with 16-bit runs; 20 kB of records make the claim plausible
    header = f"{2**31 - 1:032b}" + "00111" + "1111" * 4
    data = _bits_to_bytes(header) + [255] * 20_000
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"2147483647 values but 24 were expected.*2x3"):
            rle_to_mask(data, 2, 3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20  # the 2 GiB the header asks for is never allocated


def test_labeling_config() -> None:
    root = ET.fromstring(labeling_config(CAMVID))
    image = root.find("Image")
    brush = root.find("BrushLabels")
    assert image.get("name") == "image" and image.get("value") == "$image"
    assert brush.get("name") == "tag" and brush.get("toName") == "image"
    labels = brush.findall("Label")
    assert [lab.get("value") for lab in labels] == ["to-label", *CAMVID.names]
    assert labels[1].get("background") == "#808080"  # sky (128, 128, 128)
    assert labels[4].get("background") == "#804080"  # road (128, 64, 128)


def test_labeling_config_refuses_placeholder_name() -> None:
    from segloop.data.classes import ClassSpec

    with pytest.raises(ConfigError, match="to-label"):
        labeling_config(ClassSpec(classes=["a", "to-label"]))


def test_export_structure(tmp_path, region_sel) -> None:
    path = export_labelstudio(region_sel, tmp_path / "tasks.json")
    tasks = json.loads(path.read_text())
    assert len(tasks) == len(region_sel.images)
    digest = selection_digest(region_sel)
    for task, (sid, entry) in zip(tasks, region_sel.images.items(), strict=True):
        assert task["data"] == {"image": entry.image_uri, "segloop_image_id": sid,
                                "segloop_round": 3, "segloop_digest": digest}
        (pred,) = task["predictions"]
        assert pred["model_version"] == "segloop-round-003"
        units = region_sel.units_of(sid)
        assert [r["id"] for r in pred["result"]] == [f"r{u.region_id}" for u in units]
        for result, unit in zip(pred["result"], units, strict=True):
            assert result["type"] == "brushlabels"
            assert (result["from_name"], result["to_name"]) == ("tag", "image")
            assert (result["original_height"], result["original_width"]) == (entry.height,
                                                                              entry.width)
            value = result["value"]
            assert value["format"] == "rle" and value["brushlabels"] == ["to-label"]
            np.testing.assert_array_equal(
                rle_to_mask(value["rle"], entry.height, entry.width), unit.mask)


def test_whole_image_units_export_full_masks(tmp_path, image_sel) -> None:
    tasks = json.loads(export_labelstudio(image_sel, tmp_path / "t.json").read_text())
    for task, entry in zip(tasks, image_sel.images.values(), strict=True):
        (result,) = task["predictions"][0]["result"]
        assert result["id"] == "r-1"
        assert rle_to_mask(result["value"]["rle"], entry.height, entry.width).all()


def _annotation(ident, stamp, rle, name, cancelled=False):
    return {"id": ident, "created_at": stamp, "was_cancelled": cancelled,
            "result": [{"id": "x", "type": "brushlabels", "from_name": "tag", "to_name": "image",
                        "original_width": 16, "original_height": 12,
                        "value": {"format": "rle", "rle": rle, "brushlabels": [name]}}]}


def test_latest_non_cancelled_annotation_wins(tmp_path, region_sel, spec) -> None:
    path = export_labelstudio(region_sel, tmp_path / "t.json")
    tasks = json.loads(path.read_text())
    rle = tasks[0]["predictions"][0]["result"][0]["value"]["rle"]
    tasks[0]["annotations"] = [
        _annotation(5, "2025-01-03T10:00:00.000000Z", rle, "car", cancelled=True),
        _annotation(2, "2025-01-02T10:00:00.000000Z", rle, "road"),
        _annotation(1, "2025-01-01T10:00:00.000000Z", rle, "background"),
    ]
    path.write_text(json.dumps(tasks))
    labels = read_labelstudio_labels(path, region_sel, spec)
    assert set(labels) == set(region_sel.images)
    first = region_sel.units[0]
    a = labels[first.image_id]
    assert (a[first.mask] == 1).all() and (a[~first.mask] == 255).all()
    # tasks without annotations come back all-ignore
    assert (labels[region_sel.units[-1].image_id] == 255).all()


def test_non_brush_regions_are_refused(tmp_path, region_sel, spec) -> None:
    tasks = json.loads(export_labelstudio(region_sel, tmp_path / "t.json").read_text())
    tasks[0]["annotations"] = [{"id": 1, "result": [
        {"type": "choices", "value": {"choices": ["ok"]}},
        {"type": "polygonlabels", "value": {"points": [[0, 0], [1, 1], [0, 1]],
                                            "polygonlabels": ["car"]}},
    ]}]
    (tmp_path / "t.json").write_text(json.dumps(tasks))
    with pytest.raises(DataError, match="polygonlabels region cannot be imported"):
        read_labelstudio_labels(tmp_path / "t.json", region_sel, spec)


def test_local_files_urls_resolve_symlinks_and_stay_under_the_root(tmp_path) -> None:
    from segloop.errors import ConfigError
    from segloop.labeling import local_files_url

    root = tmp_path / "served"
    (root / "camvid" / "train").mkdir(parents=True)
    image = root / "camvid" / "train" / "0001 TP.png"
    image.write_bytes(b"png")
    link = tmp_path / "link.png"
    link.symlink_to(image)
    assert local_files_url(str(image), root) == "/data/local-files/?d=camvid/train/0001%20TP.png"
    assert local_files_url(str(link), root) == local_files_url(str(image), root)
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"png")
    with pytest.raises(ConfigError, match="not under active.labelstudio_document_root"):
        local_files_url(str(outside), root)
    with pytest.raises(ConfigError, match="not a local file"):
        local_files_url("s3://bucket/a.png", root)


def test_export_writes_the_given_image_urls(tmp_path, region_sel) -> None:
    path = export_labelstudio(region_sel, tmp_path / "ls.json", lambda uri: f"/x/{uri}")
    tasks = json.loads(path.read_text())
    assert [t["data"]["image"] for t in tasks] == [
        f"/x/{e.image_uri}" for e in region_sel.images.values()]


def test_tasks_of_earlier_rounds_are_skipped(tmp_path, region_sel, spec) -> None:
    """One project kept over many rounds exports them all: earlier rounds' tasks (committed
    already) are skipped and counted; a later round's task is still refused."""
    tasks = json.loads(export_labelstudio(region_sel, tmp_path / "t.json").read_text())
    old = json.loads(json.dumps(tasks[0]))
    old["data"].update(segloop_round=1, segloop_digest="f" * 64)
    old["annotations"] = [_annotation(9, "2025-01-01T10:00:00Z", [0], "car")]  # junk: unread
    path = tmp_path / "project.json"
    path.write_text(json.dumps([old, *tasks]))
    labels = read_labelstudio_labels(path, region_sel, spec)
    assert set(labels) == set(region_sel.images)
    assert import_labels(path, region_sel, spec).skipped_tasks == 1
    later = json.loads(json.dumps(tasks[0]))
    later["data"].update(segloop_round=4, segloop_digest="f" * 64)
    path.write_text(json.dumps([*tasks, later]))
    with pytest.raises(DataError, match="this is round 4's file"):
        read_labelstudio_labels(path, region_sel, spec)
