"""The human labelling round trip against a real Label Studio server (1.23).

The active_learning flow (region level, tasks as Local Storage URLs) exports round 0; the
tasks and labelling interface go into a Label Studio project over its API, which serves
every task's image. A labeller who submits the pre-annotations unchanged, or paints outside
the selected regions, gets a clear refusal naming the task; exact labels (brush strokes
encoded by Label Studio's own encoder, exported by Label Studio) commit round 0 with the
ground truth inside the regions; round 1 goes into the same project and its export, which
also holds round 0's tasks, commits round 1; the loop then completes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segloop.cli import main
from segloop.data.classes import CAMVID
from segloop.labeling import rle_to_mask
from segloop.testing import write_camvid

sys.path.insert(0, str(Path(__file__).parents[1] / "flows"))
from test_active_learning_flow import _tags, al_config  # noqa: E402

pytestmark = [pytest.mark.labelstudio, pytest.mark.timeout(1800)]
VOID = 11


def _image_file(task: dict[str, Any], root: Path) -> Path:
    url = task["data"]["image"]
    assert url.startswith("/data/local-files/?d="), url
    return root / url.split("?d=", 1)[1]


def _units(task: dict[str, Any]) -> list[np.ndarray]:
    (pred,) = task["predictions"]
    return [rle_to_mask(r["value"]["rle"], r["original_height"], r["original_width"])
            for r in pred["result"]]


def _exact_labels(ls: Any, task: dict[str, Any], gt: np.ndarray,
                  extra: np.ndarray | None = None) -> list[dict[str, Any]]:
    """A person's brush regions: each unit split by its true classes (void left out);
    ``extra``: one more stroke (labelled road) wherever it is True."""
    masks: dict[str, np.ndarray] = {}
    names: dict[str, str] = {}
    for k, unit in enumerate(_units(task)):
        for c in np.unique(gt[unit]):
            if c != VOID:
                masks[f"u{k}c{c}"], names[f"u{k}c{c}"] = unit & (gt == c), CAMVID.names[c]
    if extra is not None:
        masks["stray"], names["stray"] = extra, "road"
    rles = ls.encode_masks(masks)
    h, w = gt.shape
    return [{"id": key, "type": "brushlabels", "from_name": "tag", "to_name": "image",
             "original_width": w, "original_height": h, "image_rotation": 0,
             "value": {"format": "rle", "rle": rles[key], "brushlabels": [names[key]]}}
            for key in masks]


def _round_tasks(ls: Any, project: int, n: int) -> list[dict[str, Any]]:
    return [t for t in ls.tasks(project) if t["data"].get("segloop_round") == n]


def _label_round(ls: Any, project: int, n: int, camvid: Path, root: Path) -> int:
    tasks = _round_tasks(ls, project, n)
    for task in tasks:
        gt = np.asarray(Image.open(camvid / "trainannot" / _image_file(task, root).name))
        ls.annotate(task["id"], _exact_labels(ls, task, gt))
    return len(tasks)


def test_label_studio_round_trip(prefect_harness: None, label_studio: Any, document_root: Path,
                                 tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import yaml

    from segloop.flows.active_learning import active_learning_flow

    ls = label_studio
    camvid = document_root / "camvid"
    write_camvid(str(camvid), {"train": 10, "val": 4}, hw=(24, 32))
    cfg = al_config(tmp_path, camvid, "ls", annotator="human", rounds=1, level="region",
                    initial_fraction=0.1, budget_per_round=0.1,
                    labelstudio_images="local-files",
                    labelstudio_document_root=str(document_root),
                    region={"n_segments": 12, "max_per_image": 2})
    pipe = tmp_path / "ls.yaml"
    pipe.write_text(yaml.safe_dump(cfg.to_dict()))
    ws = tmp_path / "ls/ws"

    first = active_learning_flow(config=cfg)
    assert first.status == "waiting_for_labels"
    tasks_dir = Path(first.pending)
    project = ls.create_project("segloop e2e",
                                (tasks_dir / "labelstudio_config.xml").read_text())
    ls.add_local_storage(project, camvid / "train")
    ls.import_tasks(project, json.loads((tasks_dir / "labelstudio.json").read_text()))
    tasks = _round_tasks(ls, project, 0)
    assert tasks and all(t["predictions"] for t in tasks)
    for task in tasks:  # Label Studio serves each task's image, byte for byte
        served = ls.get(task["data"]["image"])
        assert served.content == _image_file(task, document_root).read_bytes()

    # 1. Submit every task with the pre-annotations unchanged: refused, nothing committed.
    for task in tasks:
        ls.annotate(task["id"], task["predictions"][0]["result"])
    export = ls.export_json(project, tmp_path / "unchanged.json")
    assert main(["labels", "import", str(export), "-p", str(pipe)]) == 2
    err = capsys.readouterr().err
    assert "have no label" in err and "--allow-unlabelled" in err and "Traceback" not in err
    assert _tags(ws) == []

    # 2. Exact labels, but one task with a stroke outside its regions: refused by task id.
    _label_round(ls, project, 0, camvid, document_root)
    bad = tasks[0]
    gt = np.asarray(Image.open(camvid / "trainannot" / _image_file(bad, document_root).name))
    outside = ~np.logical_or.reduce(_units(bad))
    stray = np.zeros_like(outside)
    ys, xs = np.nonzero(outside)
    stray[ys[:3], xs[:3]] = True
    ls.annotate(bad["id"], _exact_labels(ls, bad, gt, extra=stray))
    export = ls.export_json(project, tmp_path / "stray.json")
    assert main(["labels", "import", str(export), "-p", str(pipe)]) == 2
    err = capsys.readouterr().err
    assert f"Label Studio task {bad['id']}" in err and "3 labelled pixels outside" in err
    assert _tags(ws) == []

    # 3. The labeller fixes the task (the latest annotation wins): round 0 commits.
    ls.annotate(bad["id"], _exact_labels(ls, bad, gt))
    export = ls.export_json(project, tmp_path / "round0.json")
    assert main(["labels", "import", str(export), "-p", str(pipe)]) == 0
    assert "round 000 committed" in capsys.readouterr().out
    assert _tags(ws) == ["labels/r000"]
    round0 = ws / "data/labels/round_000"
    meta = json.loads((round0 / "round.json").read_text())
    assert meta["imported"]["units_empty"] == 0 and meta["imported"]["units_labelled"] > 0
    for task in tasks:  # what was committed is the ground truth inside the units
        image = _image_file(task, document_root)
        gt = np.asarray(Image.open(camvid / "trainannot" / image.name))
        inside = np.logical_or.reduce(_units(task)) & (gt != VOID)
        (label_file,) = [p for p in (round0 / "labels").iterdir()
                         if p.stem == task["data"]["segloop_image_id"]]
        label = np.asarray(Image.open(label_file))
        np.testing.assert_array_equal(label[inside], gt[inside])
        assert (label[~inside] == CAMVID.ignore_index).all()

    # 4. The next round goes into the same project; its export also holds round 0's tasks.
    second = active_learning_flow(config=cfg)
    assert second.status == "waiting_for_labels"
    tasks_dir = Path(second.pending)
    ls.import_tasks(project, json.loads((tasks_dir / "labelstudio.json").read_text()))
    assert _label_round(ls, project, 1, camvid, document_root) > 0
    export = ls.export_json(project, tmp_path / "round1.json")
    assert main(["labels", "import", str(export), "-p", str(pipe)]) == 0
    out = capsys.readouterr().out
    assert "round 001 committed" in out
    assert f"{len(tasks)} task(s) exported for earlier rounds were in the file and skipped" in out
    assert _tags(ws) == ["labels/r000", "labels/r001"]
    final = active_learning_flow(config=cfg)
    assert final.status == "complete" and [r["round"] for r in final.rounds] == [0, 1]
    dvc = subprocess.run([sys.executable, "-m", "dvc", "status", "-q"], cwd=ws,
                         capture_output=True, text=True)
    assert dvc.returncode == 0, dvc.stdout + dvc.stderr
