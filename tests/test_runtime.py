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


@pytest.mark.parametrize(("before", "after"), [(None, "segloop"), ("", "segloop"),
                                                ("dvc, fsspec", "dvc,fsspec,segloop"),
                                                ("segloop,dvc", "segloop,dvc")])
def test_the_library_logger_joins_prefects_extra_loggers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, before: str | None, after: str
) -> None:
    import os

    if before is None:
        monkeypatch.delenv("PREFECT_LOGGING_EXTRA_LOGGERS", raising=False)
    else:
        monkeypatch.setenv("PREFECT_LOGGING_EXTRA_LOGGERS", before)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    configure_offline()
    assert os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] == after
    import logging

    assert logging.getLogger("segloop.active.loop").getEffectiveLevel() <= logging.INFO
