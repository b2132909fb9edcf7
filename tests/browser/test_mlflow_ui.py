"""The MLflow UI in a real browser: the active-learning experiment of a tracked loop, one run
per round, and the loop's mIoU chart.

Runs the active_learning flow with ``tracking.mlflow: true`` on a small generated CamVid,
serves the workspace's store with the command ``segloop dashboards mlflow`` runs, and opens
the experiment and the loop's run in Chromium.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segloop.testing import free_port, served

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]  # a first run installs Chromium
mlflow = pytest.importorskip("mlflow", reason="the segloop[mlflow] extra is not installed")


@pytest.fixture
def tracked_loop(camvid_root: Path, tmp_path: Path) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """A finished 2-round loop logged to MLflow, its store served by the MLflow UI; yields
    the UI's URL, the config and the loop's run ids. The loop runs as users run it
    (`segloop run active_learning`, Prefect's local server in its own process), which also
    keeps this process's Prefect clients free for the other browser tests."""
    from segloop.config import dump_config, parse_config
    from segloop.tracking.commands import mlflow_ui_command
    from segloop.tracking.mlflow_runs import tracking_uri

    port = free_port()
    cfg = parse_config({
        "base": {"seed": 1, "paths": {"workspace": str(tmp_path / "ws"),
                                      "dvc_remote": str(tmp_path / "remote"),
                                      "prefect_home": str(tmp_path / "prefect"),
                                      "reports": str(tmp_path / "reports")}},
        "data": {"root": str(camvid_root)},
        "train": {"model": "unet", "width": 4, "depth": 2, "steps": 4, "batch_size": 2},
        "active": {"image_size": [24, 32], "rounds": 2, "initial_fraction": 0.2,
                   "budget_per_round": 0.2, "strategy": "entropy"},
        "tracking": {"mlflow": True, "ui_url": f"http://127.0.0.1:{port}"},
    })
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(dump_config(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    proc = subprocess.run([sys.executable, "-m", "segloop.cli", "run", "active_learning",
                           "--pipeline", str(pipeline)], env=env, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(cfg))
    exp = client.get_experiment_by_name("segloop-active_learning")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    ids = {"experiment": exp.experiment_id, "loop": parent.info.run_id,
           "loop_name": parent.info.run_name}
    url = cfg.tracking.ui_url
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    with served(mlflow_ui_command(cfg), f"{url}/health", tmp_path / "mlflow-ui.log", env):
        yield url, cfg, ids


def test_mlflow_ui_shows_rounds_and_the_miou_chart(tracked_loop: tuple[str, Any, dict],
                                                   browser: Any) -> None:
    url, _, ids = tracked_loop
    browser.get(f"{url}/#/experiments/{ids['experiment']}/runs")
    # the experiment lists the loop's run; expanded, one nested run per round
    browser.wait_for_text("segloop-active_learning", ids["loop_name"], "4 matching runs",
                          timeout=90)
    from selenium.webdriver.common.by import By

    browser.driver.find_element(
        By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']").click()
    browser.wait_for_text("round 000", "round 001", "round 002", timeout=30)
    browser.screenshot("experiment")
    browser.assert_no_console_errors()
    # the loop's run: its metrics, the mIoU chart among them
    browser.get(f"{url}/#/experiments/{ids['experiment']}/runs/{ids['loop']}/model-metrics")
    browser.wait_for_text("Model metrics", "cost", timeout=90)
    search = browser.driver.find_element(
        By.CSS_SELECTOR, "input[placeholder='Search metric charts']")
    search.send_keys("miou")  # the chart grid renders lazily: bring the mIoU chart up
    # drawn: the chart's legend and its axis title (a spinner shows neither)
    browser.wait_for_text("image level, entropy (ws) (miou)", "Step", timeout=60)
    browser.screenshot("loop-run-metrics")
    browser.assert_no_console_errors()
