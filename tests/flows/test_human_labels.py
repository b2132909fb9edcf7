"""The human path: the flow exports tasks and waits; finished labels are imported, checked
against the selection and committed; tampered files are refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segloop.cli import main
from segloop.data import rle
from segloop.data.parquet import read_table

sys.path.insert(0, str(Path(__file__).parent))
from test_active_learning_flow import _tags, al_config  # noqa: E402


def _label_like_a_person(tasks: Path, camvid: Path, out: Path) -> Path:
    """Fill the exported COCO tasks with exact ground-truth labels inside each unit."""
    coco = json.loads((tasks / "coco.json").read_text())
    images = {im["id"]: im for im in coco["images"]}
    anns, next_id = [], 1
    for ann in coco["annotations"]:
        im = images[ann["image_id"]]
        gt = np.asarray(Image.open(camvid / "trainannot" / Path(im["file_name"]).name))
        unit = rle.decode(ann["segmentation"])
        for c in np.unique(gt[unit]):
            if c == 11:  # void stays unlabelled
                continue
            part = unit & (gt == c)
            anns.append({"id": next_id, "image_id": im["id"], "category_id": int(c) + 1,
                         "segmentation": rle.encode(part), "iscrowd": 0,
                         "area": int(part.sum())})
            next_id += 1
    coco["annotations"] = anns
    out.write_text(json.dumps(coco))
    return out


def test_export_wait_import_resume_and_tamper(prefect_harness: None, camvid_root: Path,
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    import yaml

    from segloop.flows.active_learning import active_learning_flow

    cfg = al_config(tmp_path, camvid_root, "h", annotator="human", rounds=1)
    pipe = tmp_path / "h.yaml"
    pipe.write_text(yaml.safe_dump(cfg.to_dict()))
    ws = tmp_path / "h/ws"

    first = active_learning_flow(config=cfg)
    assert first.status == "waiting_for_labels" and _tags(ws) == []
    tasks = Path(first.pending)
    for name in ("selection.json", "coco.json", "labelstudio.json", "labelstudio_config.xml"):
        assert (tasks / name).is_file()
    # a run while people label (say, the nightly schedule) keeps their export as it is
    exported = (tasks / "selection.json").read_bytes()
    again = active_learning_flow(config=cfg)
    assert again.status == "waiting_for_labels" and again.pending == first.pending
    assert (tasks / "selection.json").read_bytes() == exported

    # a file for another selection (tampered digest) is refused, nothing is committed
    done = _label_like_a_person(tasks, camvid_root, tmp_path / "done.json")
    bad = json.loads(done.read_text())
    bad["segloop"]["selection_digest"] = "0" * 64
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main(["labels", "import", str(tmp_path / "bad.json"), "-p", str(pipe)]) == 2
    assert "digest" in capsys.readouterr().err.lower()
    assert _tags(ws) == []

    # the export submitted unchanged (every unit still 'to-label') is refused
    assert main(["labels", "import", str(tasks / "coco.json"), "-p", str(pipe)]) == 2
    err = capsys.readouterr().err
    assert "2 of the 2 selected units of round 0 have no label" in err
    assert "--allow-unlabelled" in err and "Traceback" not in err
    assert _tags(ws) == []
    # units.json (what gets committed) edited behind the digest-checked selection: refused
    units_file = tasks / "units.json"
    kept_units = units_file.read_text()
    units = json.loads(kept_units)
    units["units"] = units["units"][:1]
    units_file.write_text(json.dumps(units))
    assert main(["labels", "import", str(done), "-p", str(pipe)]) == 2
    assert "does not list the units of" in capsys.readouterr().err
    units_file.write_text(kept_units)
    assert _tags(ws) == []

    assert main(["labels", "import", str(done), "-p", str(pipe)]) == 0
    assert "round 000 committed" in capsys.readouterr().out
    assert _tags(ws) == ["labels/r000"]
    meta = json.loads((ws / "data/labels/round_000/round.json").read_text())
    assert meta["imported"]["units_labelled"] == 2 and meta["imported"]["units_empty"] == 0
    rows = read_table(str(ws / "data/labels/round_000/round.parquet")).to_pylist()
    assert all(0 < r["labelled_pixels"] <= r["total_pixels"] for r in rows)
    labels = sorted((ws / "data/labels/round_000/labels").iterdir())
    assert len(labels) == 2  # 20% of 10 images, whole images at image level

    second = active_learning_flow(config=cfg)  # trains on round 0, selects round 1, waits
    assert second.status == "waiting_for_labels"
    assert [r["round"] for r in second.rounds] == [0]
    out = tmp_path / "exported"
    assert main(["labels", "export", "--out", str(out), "-p", str(pipe)]) == 0
    assert (out / "coco.json").is_file()
    done1 = _label_like_a_person(out, camvid_root, tmp_path / "done1.json")
    assert main(["labels", "import", str(done1), "-p", str(pipe)]) == 0
    assert _tags(ws) == ["labels/r000", "labels/r001"]
    final = active_learning_flow(config=cfg)
    assert final.status == "complete" and [r["round"] for r in final.rounds] == [0, 1]
