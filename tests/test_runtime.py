from __future__ import annotations

from pathlib import Path

import pytest

from segloop.runtime import OFFLINE_DEFAULTS, configure_offline


def test_configure_offline_sets_defaults_and_keeps_user_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in [*OFFLINE_DEFAULTS, "PREFECT_HOME"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    monkeypatch.chdir(tmp_path)
    configure_offline("state/prefect")
    import os

    assert os.environ["PREFECT_HOME"] == str(tmp_path / "state/prefect")
    assert (tmp_path / "state/prefect").is_dir()
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "300"


def test_the_library_logs_at_info_and_warnings_reach_stderr_outside_runs(
    capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from segloop.flows import run_logs

    bridge = run_logs.install()
    assert run_logs.install() is bridge  # once
    assert logging.getLogger("segloop.active.loop").getEffectiveLevel() <= logging.INFO
    log = logging.getLogger("segloop.some.module")
    log.info("routine step")  # outside a run: not printed
    log.warning("disk nearly full")
    assert capsys.readouterr().err == "segloop: warning: disk nearly full\n"
