"""The Prefect UI in a real browser: a smoke flow run, its state and its artifact.

The test harness's server (``prefect_test_harness``) runs with the UI off, so this module
starts ``prefect server start`` (API + UI) on a free local port with its own PREFECT_HOME
and SQLite database, runs the smoke flow against it on a small generated CamVid, then opens
the run's page in Chromium.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from segloop.testing import free_port, served

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]  # a first run installs Chromium

START_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def prefect_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server with its UI; yields its URL (the API is at <url>/api)."""
    home = tmp_path_factory.mktemp("prefect-ui-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home),
           # in the environment, not only as --host/--port: the UI's API URL is built from
           # these settings (Prefect 3.9 ignores the flags there and points the UI at :4200)
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           # no marketing banners: they load images from the internet (console errors offline)
           "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
           "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}"}
    env.pop("PREFECT_API_URL", None)  # the UI then calls this server's own /api
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
           "--port", str(port), "--ui", "--analytics-off",
           # nothing is scheduled here: two polling services less on a small machine
           "--no-scheduler", "--no-late-runs"]
    with served(cmd, f"{url}/api/health", home / "server.log", env, START_TIMEOUT_S):
        index = httpx.get(url, timeout=30)
        assert index.status_code == 200 and '<div id="app"' in index.text, (
            f"{url} serves no UI (status {index.status_code}); is prefect/server/ui there?")
        yield url


def _run_smoke_flow(api_url: str, tmp_path: Path, camvid_root: Path, name: str) -> str:
    """Run the smoke flow against ``api_url``; returns the flow run's id."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from segloop.config import parse_config
    from segloop.flows.smoke import smoke_flow

    cfg = parse_config({
        "base": {"seed": 3, "paths": {"workspace": str(tmp_path / "ws"),
                                      "dvc_remote": str(tmp_path / "remote"),
                                      "reports": str(tmp_path / "reports")}},
        "data": {"root": str(camvid_root), "split": "train"},
        "smoke": {"n_images": 4, "label_fraction": 0.25},
    })
    with temporary_settings({PREFECT_API_URL: api_url}):
        state = smoke_flow.with_options(flow_run_name=name)(config=cfg, return_state=True)
        # deliver queued logs and events (task runs) while this server is still up
        APILogWorker.drain_all(timeout=30)
        EventsWorker.drain_all(timeout=30)
    assert state.is_completed(), state
    return str(state.state_details.flow_run_id)


def test_flow_run_page_shows_state_and_artifact(
    prefect_ui: str, browser, camvid_root: Path, tmp_path: Path
) -> None:
    name = f"browser-smoke-{os.getpid()}"
    run_id = _run_smoke_flow(f"{prefect_ui}/api", tmp_path, camvid_root, name)

    browser.get(f"{prefect_ui}/runs/flow-run/{run_id}")
    browser.wait_for_text(name, "Completed", timeout=60)
    browser.screenshot("flow-run")

    browser.click_text("Artifacts")  # the tab shows once the run is final
    browser.wait_for_text("smoke-summary", timeout=30)
    browser.screenshot("flow-run-artifacts")

    browser.assert_no_console_errors()

    # The artifact's own page renders its markdown. Opened by its link's URL, not a click: on
    # leaving the flow-run page in-app, Prefect UI 3.9's run graph (pixi.js) keeps drawing
    # destroyed objects and logs "Cannot read properties of null (reading 'position')" each
    # frame, a UI bug unrelated to what segloop wrote.
    artifact_url = browser.href_of("smoke-summary")
    assert "/artifacts/" in artifact_url, artifact_url
    browser.get(artifact_url)
    browser.wait_for_text("segloop smoke run", "4 images", timeout=30)
    browser.screenshot("artifact")
    browser.assert_no_console_errors()
