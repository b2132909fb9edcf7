"""segloop.tracking.mlflow_runs against a real local MLflow store: runs found again by key,
params kept on resume, metric keys, summaries, and the error without MLflow."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

from segloop.config import Config, parse_config
from segloop.errors import ConfigError
from segloop.tracking import mlflow_runs as mr

mlflow = pytest.importorskip("mlflow", reason="the segloop[mlflow] extra is not installed")


def _cfg(tmp_path: Path, **tracking: Any) -> Config:
    return parse_config({"base": {"paths": {"workspace": str(tmp_path / "ws")}},
                         "tracking": {"mlflow": True, **tracking}})


def test_flatten_and_numeric() -> None:
    assert mr.flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}}) == {
        "a.b": "1", "a.c": "[1, 2]", "d": "None", "e": "{}"}
    assert mr.numeric({"miou": 0.5, "ok": True, "n": None, "iou": {"sign/symbol": 0.25},
                       "name": "x"}) == {"miou": 0.5, "iou.sign/symbol": 0.25}
    assert mr.metric_key("iou.a(b)") == "iou.a_b_"


def test_run_is_found_again_by_key_and_params_stay_first(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    first = mr.start(cfg, "embed", "out/a", "embed a")
    first.log_params({"x": "1"})
    first.finish()
    again = mr.start(cfg, "embed", "out/a", "embed a")
    assert again.run_id == first.run_id
    again.log_params({"x": "2", "y": "3"})  # x keeps its first value, y is added
    assert again.client.get_run(again.run_id).data.params == {"x": "1", "y": "3"}
    assert again.client.get_run(again.run_id).info.status == "RUNNING"
    other = mr.start(cfg, "embed", "out/b", "embed b")
    assert other.run_id != first.run_id
    assert (tmp_path / "ws/work/mlflow/mlflow.db").is_file()
    assert other.url() == (f"http://127.0.0.1:5000/#/experiments/{other.experiment_id}/runs/"
                           f"{other.run_id}")


def test_log_summary_logs_numbers_params_and_files(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, experiment="mine")
    report = tmp_path / "summary.json"
    report.write_text("{}")
    url = mr.log_summary(cfg, "synthesize", "data/synthetic/x",
                         {"images": 8, "seconds": 1.5, "per_class": [{"a": 1}], "commit": "abc"},
                         [report, None], ["synth"])
    client = mlflow.MlflowClient(tracking_uri=mr.tracking_uri(cfg))
    (run,) = client.search_runs([client.get_experiment_by_name("mine").experiment_id])
    assert url is not None and url.endswith(run.info.run_id)
    assert run.data.metrics == {"images": 8.0, "seconds": 1.5}
    assert run.data.tags["segloop.commit"] == "abc"
    assert "synth.steps" in run.data.params and "base.seed" in run.data.params
    assert [f.path for f in client.list_artifacts(run.info.run_id, "reports")] == [
        "reports/summary.json"]
    assert mr.link_markdown(url).strip() == f"MLflow run: [{url}]({url})"


def test_off_is_a_no_op_and_missing_mlflow_says_how_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    off = _cfg(tmp_path, mlflow=False)
    run = mr.start(off, "embed", "k", "n")
    run.log_metrics({"a": 1.0})
    assert not run.enabled and run.url() is None
    assert mr.log_summary(off, "embed", "k", {"a": 1}) is None
    assert not (tmp_path / "ws").exists()
    real = builtins.__import__

    def no_mlflow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(ConfigError, match=r"pip install 'segloop\[mlflow\]'"):
        mr.start(_cfg(tmp_path), "embed", "k", "n")


def test_config_refuses_quoted_booleans() -> None:
    with pytest.raises(ValueError, match="quoted boolean"):
        parse_config({"tracking": {"mlflow": "false"}})
