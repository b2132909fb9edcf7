"""The active_learning flow with ``tracking.fiftyone: true``: the workspace's FiftyOne dataset
is updated at the end of the run (its own database in the workspace, stopped again) and the
run's summary artifact and MLflow run link to it; the App command refuses a missing dataset
with the command that makes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from segloop.config import parse_config
from segloop.tracking import fiftyone_db as fdb

mlflow = pytest.importorskip("mlflow", reason="the segloop[mlflow] extra is not installed")


@pytest.fixture
def mongod(working_mongod: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A working mongod and no database URI from the environment (the flow starts the
    workspace's own)."""
    monkeypatch.delenv(fdb.URI_ENV, raising=False)


def test_flow_exports_the_workspace_and_links_it(
        prefect_harness: None, mongod: None, camvid_root: Path, tmp_path: Path) -> None:
    import fiftyone as fo
    from prefect.artifacts import Artifact

    from segloop.flows.active_learning import active_learning_flow
    from segloop.testing import tiny_loop_config
    from segloop.tracking.fiftyone_app import dataset_url, workspace_dataset
    from segloop.tracking.mlflow_runs import tracking_uri

    cfg = tiny_loop_config(tmp_path, camvid_root, active={"rounds": 1}, tracking={
        "mlflow": True, "fiftyone": True, "fiftyone_url": "http://127.0.0.1:5199"})
    result = active_learning_flow(config=cfg)
    assert result.status == "complete"
    assert fdb.active_database() is None  # the flow stopped the database it started
    assert fdb.URI_ENV not in os.environ

    name = workspace_dataset(cfg)
    url = dataset_url(cfg)
    assert url == f"http://127.0.0.1:5199/datasets/{name}"
    summary = Artifact.get("active-learning-summary")
    assert summary is not None and f"FiftyOne dataset: [{url}]({url})" in summary.data
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(cfg))
    exp = client.get_experiment_by_name("segloop-active_learning")
    (loop_run,) = [r for r in client.search_runs([exp.experiment_id])
                   if "mlflow.parentRunId" not in r.data.tags]
    assert loop_run.data.tags["segloop.fiftyone_dataset"] == name
    assert loop_run.data.tags["segloop.fiftyone_url"] == url

    db = fdb.ensure_database(tmp_path / "ws/work/fiftyone/db")  # the workspace's own
    try:
        assert db.database_dir == (tmp_path / "ws/work/fiftyone/db").resolve()
        ds = fo.load_dataset(name)
        assert len(ds) == 10
        assert ds.count_sample_tags() == {"selected_r000": 2, "selected_r001": 2}
        assert ds.count("ground_truth") == 10 and ds.count("prediction") == 10
        assert ds.count("labels_r000") == 2 and ds.count("labels_r001") == 2
    finally:
        fdb.stop_database()


def test_app_refuses_a_missing_dataset_with_the_fix(mongod: None, tmp_path: Path) -> None:
    from segloop.errors import DataError
    from segloop.tracking.fiftyone_app import launch

    cfg = parse_config({"base": {"paths": {"workspace": str(tmp_path / "ws")}}})
    with pytest.raises(DataError, match=r"no FiftyOne dataset 'nope'.*segloop fiftyone "
                                        r"export"):
        launch(cfg, "nope")
    assert fdb.active_database() is None  # nothing left running


def test_flow_without_fiftyone_installed_fails_before_any_round(
        prefect_harness: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    from segloop.errors import ConfigError
    from segloop.flows.active_learning import active_learning_flow

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fiftyone" else real(name, *a))
    cfg = parse_config({"base": {"paths": {"workspace": str(tmp_path / "ws")}},
                        "tracking": {"fiftyone": True}})
    with pytest.raises(ConfigError, match=r"pip install 'segloop\[fiftyone\]'"):
        active_learning_flow(config=cfg)
    assert not (tmp_path / "ws").exists()
