"""The FiftyOne App in a real browser: a workspace's exported dataset, one sample with its
segmentation fields.

Two label rounds of a small loop on a generated CamVid (the loop's library steps), exported
as ``segloop fiftyone export`` does (the workspace's own database), then served with the
command users run, ``segloop dashboards fiftyone``, and opened in Chromium.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segloop.testing import free_port, served, tiny_loop_config, two_label_rounds
from segloop.tracking import fiftyone_db as fdb

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]  # a first run installs Chromium


@pytest.fixture
def fiftyone_app(working_mongod: Path, camvid_root: Path, tmp_path: Path
                 ) -> Iterator[dict[str, Any]]:
    """The App serving a 2-round workspace's dataset; yields the dataset's URL and name, the
    export's summary and one sample picked in round 1 (id, file name)."""
    from segloop.config import dump_config
    from segloop.tracking.fiftyone_app import dataset_url
    from segloop.tracking.fiftyone_workspace import export_workspace

    os.environ.pop(fdb.URI_ENV, None)
    port = free_port()
    cfg = tiny_loop_config(tmp_path, camvid_root,
                           tracking={"fiftyone_url": f"http://127.0.0.1:{port}"})
    ctx = two_label_rounds(cfg)
    try:
        summary = export_workspace(ctx)
        import fiftyone as fo

        sample = fo.load_dataset(summary.dataset).match_tags("selected_r001").first()
        picked = {"id": sample.id, "file": Path(sample.filepath).name}
    finally:
        fdb.stop_database()
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(dump_config(cfg))
    env = {**os.environ, "FIFTYONE_DO_NOT_TRACK": "true"}
    cmd = [sys.executable, "-m", "segloop.cli", "dashboards", "fiftyone", "--pipeline",
           str(pipeline)]
    with served(cmd, f"http://127.0.0.1:{port}/fiftyone", tmp_path / "fiftyone-app.log", env,
                timeout=180):
        yield {"url": dataset_url(cfg), "name": summary.dataset, "summary": summary,
               "sample": picked}


def test_fiftyone_app_shows_the_dataset_and_a_sample_with_its_masks(
        fiftyone_app: dict[str, Any], browser: Any) -> None:
    url, name = fiftyone_app["url"], fiftyone_app["name"]
    assert fiftyone_app["summary"].samples == 10
    browser.get(url)
    # the grid: its samples and, in the sidebar, the segmentation fields and the scores
    browser.wait_for_text("10 samples", "ground_truth", "prediction", "labels_r000",
                          "labels_r001", "score_r001", timeout=120)
    shown = browser.driver.execute_script(
        "return [...document.querySelectorAll('input')].map(i => i.value)")
    assert name in shown  # the dataset selector names the workspace's dataset
    browser.click_text("Dismiss")  # FiftyOne's Enterprise promotion covers the grid
    _show(browser, "ground_truth")  # the ground-truth masks drawn over the grid
    browser.screenshot("dataset")
    browser.assert_no_console_errors()
    # one sample picked in round 1, in the App's sample view: its fields and round tag, the
    # round's labels and the prediction drawn over the image
    sample = fiftyone_app["sample"]
    browser.get(f"{url}?id={sample['id']}")
    browser.wait_for_text(sample["file"], "labels_r001", "ground_truth", "prediction",
                          "score_r001", timeout=60)
    browser.click_text("tags")
    browser.wait_for_text("selected_r001", timeout=30)
    for name in ("labels_r001", "prediction"):
        _show(browser, name)
    time.sleep(3)  # the masks are drawn on a canvas once fetched: let the screenshot have them
    browser.screenshot("sample")
    browser.assert_no_console_errors()


def _show(browser: Any, field: str) -> None:
    """Tick the visible sidebar checkbox that draws ``field`` (FiftyOne's own test hook)."""
    from selenium.webdriver.common.by import By

    boxes = [b for b in browser.driver.find_elements(
        By.CSS_SELECTOR, f"[data-cy='checkbox-{field}']") if b.is_displayed()]
    assert boxes, f"no visible checkbox for {field}"
    boxes[-1].click()
