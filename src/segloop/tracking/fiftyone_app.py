"""The FiftyOne App on a workspace's dataset (``segloop dashboards fiftyone``): its database
joined or started, the dataset checked, FiftyOne's App server launched on
``tracking.fiftyone_url``'s address and port."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from segloop.errors import DataError
from segloop.tracking.fiftyone_export import FIFTYONE_DIR

if TYPE_CHECKING:
    from segloop.config import Config

log = logging.getLogger(__name__)


def workspace_dataset(cfg: Config) -> str:
    """The name ``segloop fiftyone export`` gives the configured workspace's dataset."""
    from segloop.tracking.fiftyone_workspace import default_dataset_name

    return default_dataset_name(Path(cfg.base.paths.workspace))


def dataset_url(cfg: Config, name: str | None = None, port: int | None = None) -> str:
    """The App's page of dataset ``name`` (default: the workspace's) at
    ``tracking.fiftyone_url`` (``port`` replaces its port)."""
    base = urlsplit(cfg.tracking.fiftyone_url)
    host = base.hostname or "127.0.0.1"
    port = port or base.port or 5151
    name = quote(name or workspace_dataset(cfg))
    return f"{base.scheme or 'http'}://{host}:{port}/datasets/{name}"


@dataclass
class App:
    """A running App: ``session`` (FiftyOne's ``Session``), ``url`` (the dataset's page)."""

    session: Any
    url: str
    dataset: str

    def wait(self) -> None:
        """Block until interrupted (Ctrl-C), then close the App and the database."""
        try:
            self.session.wait(-1)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        from segloop.tracking.fiftyone_db import stop_database

        self.session.close()
        stop_database()


def launch(cfg: Config, name: str | None = None, port: int | None = None,
           database_uri: str | None = None) -> App:
    """Serve the FiftyOne App on dataset ``name`` (default: the workspace's, as exported by
    ``segloop fiftyone export``) at ``tracking.fiftyone_url`` (``port`` replaces its port).
    The App server is FiftyOne's own (a child process, with this process's database).
    Raises :class:`DataError` naming the dataset and the command that makes it when it
    does not exist."""
    from segloop.tracking.fiftyone_db import ensure_database, stop_database
    from segloop.tracking.fiftyone_setup import import_fiftyone

    name = name or workspace_dataset(cfg)
    workspace = Path(cfg.base.paths.workspace)
    ensure_database(workspace / FIFTYONE_DIR / "db", uri=database_uri)
    fo = import_fiftyone()
    if not fo.dataset_exists(name):
        known = sorted(fo.list_datasets())
        stop_database()
        raise DataError(
            f"no FiftyOne dataset {name!r} in the database of workspace {workspace} "
            f"(it holds: {', '.join(known) or 'none'}): run `segloop fiftyone export` "
            "(or set tracking.fiftyone: true and run the active_learning flow) first, or "
            "pass --name")
    url = dataset_url(cfg, name, port)
    parts = urlsplit(url)
    session = fo.launch_app(fo.load_dataset(name), port=parts.port, address=parts.hostname,
                            remote=True, auto=False)
    log.info("FiftyOne App on %s", url)
    return App(session, url, name)
