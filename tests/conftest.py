"""Test-wide settings and fixtures: offline, seeded, generated data."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from segloop.ast_race import import_without_gc
from segloop.runtime import configure_offline
from segloop.testing import write_camvid

# Before anything imports Prefect, the HF hub or DVC: offline and private state.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="segloop-prefect-home-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ["SEGLOOP_LOCK_DIR"] = tempfile.mkdtemp(prefix="segloop-locks-")  # child processes too
configure_offline()  # as `segloop run` does: the library's loggers reach the run logs
atexit.register(shutil.rmtree, os.environ["SEGLOOP_LOCK_DIR"], ignore_errors=True)

# Import what tests import lazily while Prefect's and Dask's threads run, here, on one thread
# and with the collector paused: CPython 3.11.7's AST race (segloop.ast_race) hit
# `from prefect import flow` (pytest rewrites anyio's plugin modules as it imports them).
for _name in ("prefect.main", "prefect.server.api.server", "prefect.testing.utilities",
              "segloop.flows.active_learning", "segloop.flows.embed",
              "segloop.flows.synthesize", "segloop.flows.pseudolabel", "segloop.flows.usam",
              "segloop.flows.smoke", "prefect_dask", "distributed"):
    import_without_gc(_name)

SHARED_CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "camvid"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server + SQLite database for every flow test."""
    from prefect.testing.utilities import prefect_test_harness  # imported above, GC paused

    with prefect_test_harness(server_startup_timeout=None):  # env: 90 s on a cold start
        yield


@pytest.fixture
def camvid_root(tmp_path: Path) -> Path:
    """A small generated CamVid folder: train (10 images) and val (4), 24x32."""
    root = tmp_path / "camvid"
    write_camvid(str(root), {"train": 10, "val": 4}, hw=(24, 32))
    return root


@pytest.fixture
def shared_camvid() -> Path:
    """The real CamVid under ../shared (skips if this checkout has no shared/ beside it)."""
    if not (SHARED_CAMVID / "train").is_dir():
        pytest.skip(f"real CamVid not found at {SHARED_CAMVID}")
    return SHARED_CAMVID


SLOW_TEST_TIMEOUT_S = 1800
"""Timeout of tests marked ``slow`` (the default, ``timeout`` in pyproject.toml, is 300 s)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` get a longer timeout unless they set their own."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_S))


@pytest.fixture
def interrupted_loop(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``run(cfg, at=2)``: the active-learning flow on ``cfg``, killed (KeyboardInterrupt)
    just before round ``at``'s labels are committed; the commit works again afterwards."""

    def run(cfg: Any, at: int = 2) -> None:
        from segloop.active import loop
        from segloop.flows.active_learning import active_learning_flow

        real = loop.commit_labels

        def killed(ctx: Any, n: int, *args: Any, **kwargs: Any) -> Any:
            if n == at:
                raise KeyboardInterrupt("killed")
            return real(ctx, n, *args, **kwargs)

        monkeypatch.setattr(loop, "commit_labels", killed)
        with pytest.raises(BaseException, match="killed"):
            active_learning_flow(config=cfg)
        monkeypatch.setattr(loop, "commit_labels", real)

    return run


@pytest.fixture(scope="session")
def working_mongod() -> Path:
    """A ``mongod`` that runs here for FiftyOne (FiftyOne's, else segloop's, installed as
    `segloop fiftyone install-db` does where none runs); skips, naming why, where FiftyOne
    or its database cannot run."""
    from segloop.tracking import fiftyone_setup as fsetup

    try:
        fsetup.import_fiftyone()
    except Exception as exc:  # noqa: BLE001 - any import failure: say it and skip
        pytest.skip(f"FiftyOne is not installed (segloop[fiftyone]): {exc}")
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    try:
        return fsetup.find_mongod()[0]
    except fsetup.FiftyOneDBError:
        try:
            return fsetup.install_mongod()
        except fsetup.FiftyOneDBError as exc:
            pytest.skip(f"FiftyOne's database cannot start here: {exc}")
