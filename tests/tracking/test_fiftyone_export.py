"""FiftyOne export against a real local MongoDB (isolated in a temporary folder)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segloop.tracking import fiftyone_db as fdb
from segloop.tracking.fiftyone_export import (
    GROUND_TRUTH,
    PREDICTION,
    MaskPatch,
    export_dataset,
    labels_field,
    pseudo_field,
    score_field,
    selected_tag,
)
from segloop.tracking.fiftyone_setup import import_fiftyone

try:
    import_fiftyone()
except ImportError as exc:
    pytest.skip(f"FiftyOne is not installed (segloop[fiftyone]): {exc}", allow_module_level=True)

CLASSES = ["sky", "road", "car"]
H, W = 16, 24


@pytest.fixture(scope="module")
def database(working_mongod: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[fdb.Database]:
    """A mongod of its own on a temporary folder (or FIFTYONE_DATABASE_URI if set)."""
    t0 = time.perf_counter()
    db = fdb.ensure_database(tmp_path_factory.mktemp("fiftyone") / "db")
    print(f"\nFiftyOne database: {db.source} mongod at {db.uri}, ready in "
          f"{time.perf_counter() - t0:.1f} s (fiftyone already imported)")
    yield db
    fdb.stop_database()


@pytest.fixture
def dataset_name(database: fdb.Database) -> Iterator[str]:
    import fiftyone as fo

    name = f"segloop-test-{uuid.uuid4().hex[:8]}"
    yield name
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


def _images(folder: Path, n: int = 3) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)
        out[f"{i:016x}"] = path
    return out


def _mask(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, len(CLASSES), (H, W), dtype=np.uint8)


def _inputs(tmp_path: Path, rounds: int = 1) -> dict:
    """Plain export inputs: 3 images, ground truth (arrays and a file), a prediction, a
    pseudo-label method, ``rounds`` label rounds with scores and selections, embeddings."""
    images = _images(tmp_path / "images")
    ids = list(images)
    gt_file = tmp_path / "gt2.png"
    Image.fromarray(_mask(2)).save(gt_file)
    labelled = np.full((H, W), 255, np.uint8)
    labelled[:4] = 1
    masks = {GROUND_TRUTH: {ids[0]: _mask(0), ids[1]: _mask(1), ids[2]: gt_file},
             PREDICTION: {i: _mask(10 + k) for k, i in enumerate(ids)},
             pseudo_field("usam"): {ids[1]: _mask(20)}}
    scores, selected = {}, {}
    for n in range(rounds):
        masks[labels_field(n)] = {ids[n % 3]: labelled}
        selected[n] = [ids[n % 3]]
        if n > 0:
            scores[n] = {i: 0.1 * k + n for k, i in enumerate(ids)}
    emb = {i: np.arange(8, dtype=np.float32) + k for k, i in enumerate(ids)}
    patches = {ids[0]: [MaskPatch((0, 0, 12, 8), (H, W), np.ones(8, np.float32), 0.9),
                        MaskPatch((4, 2, 24, 16), (H, W), np.zeros(8, np.float32), 0.5)]}
    return {"images": images, "classes": CLASSES, "mask_dir": tmp_path / "masks",
            "masks": masks, "scores": scores, "selected": selected, "embeddings": emb,
            "mask_patches": patches}


def _snapshot(ds) -> dict:
    """Every value of every field, label ids included (unchanged by a no-op export)."""
    fields = sorted(ds.get_field_schema())
    return {f: ds.values(f, _raw=True) for f in fields
            if f not in ("metadata", "last_modified_at")}


def test_export_fields_types_targets_tags_scores(tmp_path: Path, dataset_name: str) -> None:
    import fiftyone as fo

    args = _inputs(tmp_path, rounds=2)
    t0 = time.perf_counter()
    summary = export_dataset(dataset_name, **args)
    print(f"\ntiny export (3 images, 2 rounds): {time.perf_counter() - t0:.2f} s")
    assert (summary.samples, summary.added, summary.removed) == (3, 3, 0)
    ds = fo.load_dataset(dataset_name)
    assert ds.persistent
    assert ds.default_mask_targets == {0: "sky", 1: "road", 2: "car"}
    schema = ds.get_field_schema()
    for f in (GROUND_TRUTH, PREDICTION, "pseudo_usam", "labels_r000", "labels_r001"):
        assert schema[f].document_type is fo.Segmentation, f
    assert isinstance(schema["score_r001"], fo.FloatField)
    assert isinstance(schema["sam_embedding"], fo.VectorField)
    assert schema["sam_masks"].document_type is fo.Detections
    ids = list(args["images"])
    by_id = {s.image_id: s for s in ds}
    assert [s.image_id for s in ds] == ids  # one sample per image, in order
    for iid, path in args["images"].items():
        assert by_id[iid].filepath == str(path.resolve())
    # masks: arrays become PNGs under mask_dir (same values); files are referenced
    gt0 = by_id[ids[0]].ground_truth
    own = tmp_path / "masks" / dataset_name
    assert gt0.mask is None and Path(gt0.mask_path).parent == own / GROUND_TRUTH
    assert np.array_equal(gt0.get_mask(), args["masks"][GROUND_TRUTH][ids[0]])
    assert by_id[ids[2]].ground_truth.mask_path == str(tmp_path / "gt2.png")
    assert by_id[ids[0]].pseudo_usam is None
    assert np.array_equal(by_id[ids[1]].pseudo_usam.get_mask(), _mask(20))
    assert by_id[ids[0]].labels_r000 is not None and by_id[ids[1]].labels_r000 is None
    assert np.unique(by_id[ids[1]].labels_r001.get_mask()).tolist() == [1, 255]
    # tags and scores
    assert by_id[ids[0]].tags == [selected_tag(0)]
    assert by_id[ids[1]].tags == [selected_tag(1)]
    assert ds.count_sample_tags() == {"selected_r000": 1, "selected_r001": 1}
    assert [by_id[i][score_field(1)] for i in ids] == pytest.approx([1.0, 1.1, 1.2])
    assert not ds.has_field(score_field(0))
    # embeddings: a vector per image, patches with an embedding per mask
    assert np.array_equal(by_id[ids[2]].sam_embedding, np.arange(8) + 2.0)
    dets = by_id[ids[0]].sam_masks.detections
    assert np.allclose([d.bounding_box for d in dets], [[0, 0, 0.5, 0.5],
                                                        [1 / 6, 0.125, 5 / 6, 0.875]])
    assert np.array_equal(dets[0].embedding, np.ones(8)) and dets[1].score == 0.5
    assert by_id[ids[1]].sam_masks is None


def test_reexport_is_idempotent(tmp_path: Path, dataset_name: str) -> None:
    import fiftyone as fo

    args = _inputs(tmp_path, rounds=2)
    export_dataset(dataset_name, **args)
    ds = fo.load_dataset(dataset_name)
    before = _snapshot(ds)
    png = Path(ds.first().prediction.mask_path)
    mtime = png.stat().st_mtime_ns
    again = export_dataset(dataset_name, **_inputs(tmp_path, rounds=2))
    assert (again.samples, again.added, again.removed) == (3, 0, 0)
    assert set(again.changed.values()) == {0}, again.changed
    ds.reload()
    assert len(ds) == 3 and _snapshot(ds) == before
    assert png.stat().st_mtime_ns == mtime  # unchanged masks are not rewritten


def test_added_round_adds_only_its_fields(tmp_path: Path, dataset_name: str) -> None:
    import fiftyone as fo

    export_dataset(dataset_name, **_inputs(tmp_path, rounds=2))
    ds = fo.load_dataset(dataset_name)
    before = _snapshot(ds)
    summary = export_dataset(dataset_name, **_inputs(tmp_path, rounds=3))
    assert summary.added == 0
    assert {k for k, v in summary.changed.items() if v} == {
        labels_field(2), score_field(2), selected_tag(2)}
    ds.reload()
    after = _snapshot(ds)
    assert set(after) - set(before) == {labels_field(2), score_field(2)}
    for f in before:
        if f != "tags":
            assert after[f] == before[f], f
    assert ds.count_sample_tags() == {f"selected_r00{n}": 1 for n in range(3)}
    assert ds.values(score_field(2)) == pytest.approx([2.0, 2.1, 2.2])


def test_changed_inputs_update_in_place(tmp_path: Path, dataset_name: str) -> None:
    import fiftyone as fo

    args = _inputs(tmp_path, rounds=2)
    export_dataset(dataset_name, **args)
    ids = list(args["images"])
    old_png = Path(fo.load_dataset(dataset_name).first().prediction.mask_path)
    # a new model's prediction (one image changed, one gone), a changed selection, and
    # image 1 leaves the pool
    args["masks"][PREDICTION][ids[0]] = np.zeros((H, W), np.uint8)
    del args["masks"][PREDICTION][ids[2]]
    args["selected"][1] = [ids[2]]
    del args["images"][ids[1]]
    for by_id in [*args["masks"].values(), *args["scores"].values(), args["embeddings"]]:
        by_id.pop(ids[1], None)
    summary = export_dataset(dataset_name, **args, prune=True)
    assert (summary.samples, summary.removed) == (2, 1)
    assert summary.changed[PREDICTION] == 2 and summary.changed[GROUND_TRUTH] == 0
    ds = fo.load_dataset(dataset_name)
    by_id = {s.image_id: s for s in ds}
    assert set(by_id) == {ids[0], ids[2]}
    assert not by_id[ids[0]].prediction.get_mask().any()
    assert by_id[ids[2]].prediction is None
    assert not old_png.exists()  # the replaced mask file is gone
    assert by_id[ids[2]].tags == [selected_tag(1)] and by_id[ids[0]].tags == [selected_tag(0)]


def test_embeddings_work_with_fiftyone_brain(tmp_path: Path, dataset_name: str) -> None:
    import fiftyone as fo
    import fiftyone.brain as fob

    export_dataset(dataset_name, **_inputs(tmp_path))
    ds = fo.load_dataset(dataset_name)
    fob.compute_similarity(ds, embeddings="sam_embedding", brain_key="sim", backend="sklearn")
    first = ds.first()
    nearest = ds.sort_by_similarity(first.id, brain_key="sim", k=2).values("image_id")
    assert nearest[0] == first.image_id
    fob.compute_similarity(ds, patches_field="sam_masks", embeddings="embedding",
                           brain_key="mask_sim", backend="sklearn")
    assert set(ds.list_brain_runs()) == {"sim", "mask_sim"}


def test_bad_inputs_are_refused(tmp_path: Path, dataset_name: str) -> None:
    from segloop.errors import DataError

    args = _inputs(tmp_path)
    with pytest.raises(DataError, match="not in images"):
        export_dataset(dataset_name, **{**args, "selected": {0: ["nope"]}})
    with pytest.raises(DataError, match="cannot be a FiftyOne field"):
        export_dataset(dataset_name, **{**args, "masks": {"labels.r0": {}}})
    with pytest.raises(DataError, match=r"\(H, W\)"):
        export_dataset(dataset_name, **{**args, "masks": {"bad": {
            list(args["images"])[0]: np.zeros((2, 2, 3), np.uint8)}}})


def test_database_is_isolated_and_reused(database: fdb.Database, tmp_path: Path) -> None:
    if database.source == "uri":
        pytest.skip("FIFTYONE_DATABASE_URI names the database")
    assert database.database_dir is not None
    assert (database.database_dir / "mongod.lock").is_file()
    assert os.environ[fdb.URI_ENV] == database.uri  # what FiftyOne's App server inherits
    assert fdb.ensure_database(database.database_dir) is database
    journal = database.database_dir / "journal"
    assert sum(p.stat().st_size for p in journal.iterdir()) < 100 * 2**20  # no prealloc


# ---- finding and installing mongod (no database needed) ----------------------------------


# ---- a whole active-learning workspace ------------------------------------------------------


def _embed_output(folder: Path, ids: list[str], hw: tuple[int, int]) -> None:
    """A two-masks-per-image SAM embed output (only what the export reads is meaningful)."""
    from segloop.data.parquet import write_table
    from segloop.embed.store import shard_url
    from segloop.embed.tables import mask_schema

    dim = 1024
    rows = [{"image_id": iid, "name": iid, "height": hw[0], "width": hw[1], "point_index": k,
             "point_x": 1.0, "point_y": 1.0,
             "embedding": np.full(dim, k + 1, np.float16).tolist(), "mask_rle": "",
             "mask_index": 0, "predicted_iou": 0.5 + k / 4, "stability_score": 0.9,
             "bbox_xyxy": [0, 0, hw[1] // (k + 1), hw[0] // (k + 1)], "area": 10,
             "all_mask_rle": None, "all_predicted_iou": None, "all_stability_score": None}
            for iid in ids for k in range(2)]
    write_table(shard_url(str(folder), "masks", "real", 0), mask_schema("float16"), rows)


def test_export_workspace(database: fdb.Database, camvid_root: Path, tmp_path: Path) -> None:
    """Two simulated rounds through the loop's library steps, then the workspace export."""
    import fiftyone as fo

    from segloop.testing import tiny_loop_config, two_label_rounds
    from segloop.tracking.fiftyone_workspace import export_workspace

    cfg = tiny_loop_config(tmp_path, camvid_root)
    ctx = two_label_rounds(cfg)
    ids = list(ctx.pool.arrays.image_ids)
    _embed_output(ctx.ws.root / "data/embeddings/camvid", ids, (24, 32))

    name = f"segloop-test-{uuid.uuid4().hex[:8]}"
    try:
        summary = export_workspace(ctx, name, database_uri=database.uri)
        assert (summary.samples, summary.added) == (10, 10)
        ds = fo.load_dataset(name)
        assert ds.default_mask_targets == dict(enumerate(ctx.classes.names))
        scheme = ds.app_config.color_scheme  # masks coloured by class, segloop's palette
        assert scheme.color_by == "value"
        assert [c["intTarget"] for c in scheme.default_mask_targets_colors] == list(
            range(len(ctx.classes.names)))
        r, g, b = ctx.classes.colors[0].tolist()
        assert scheme.default_mask_targets_colors[0]["color"] == f"#{r:02x}{g:02x}{b:02x}"
        assert ds.count_sample_tags() == {"selected_r000": 2, "selected_r001": 2}
        assert ds.count("ground_truth") == 10 and ds.count("prediction") == 10
        assert ds.count("labels_r000") == 2 and ds.count("labels_r001") == 2
        assert ds.count("score_r000") == 10 and ds.count("score_r001") == 8  # unlabelled
        assert set(ds.values("image_id")) == set(ids)
        assert set(ds.values("metadata.height")) == {24}  # read from the pool's images
        sample = ds.match_tags("selected_r001").first()
        assert sample.labels_r001.mask_path == str(
            ctx.round_dir(1) / "labels" / f"{sample.image_id}.png")
        assert np.array_equal(sample.sam_embedding, np.full(1024, 1.5, np.float32))
        boxes = [d.bounding_box for d in sample.sam_masks.detections]
        assert np.allclose(boxes, [[0, 0, 1, 1], [0, 0, 0.5, 0.5]])
        again = export_workspace(ctx, name, database_uri=database.uri)
        assert again.samples == 10 and set(again.changed.values()) == {0}, again.changed
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
