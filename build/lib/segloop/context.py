"""Where a run's data and workspace come from: shared by every flow."""

from __future__ import annotations

from pathlib import Path

from segloop.config import Config
from segloop.data.camvid import locate_camvid
from segloop.data.fs import expand_env
from segloop.data.voc import voc_root_hint
from segloop.errors import ConfigError
from segloop.versioning import ROUND_DIR, Workspace, init_workspace


def resolve_data_root(cfg: Config, splits: tuple[str, ...] | None = None) -> str:
    """The dataset root to read: ``data.root``, or for ``auto`` the located/downloaded CamVid."""
    d = cfg.data
    if d.format == "camvid":
        return locate_camvid(d.root, candidates=d.candidates, download_dir=d.download_dir,
                             source=d.download_url, download=d.download,
                             splits=splits or (d.split,))
    if d.format == "voc" and d.root.strip().lower() == "auto":
        raise ConfigError(f"data.root 'auto' is not supported for data.format voc; "
                          f"{voc_root_hint()}")
    return d.root


def open_workspace(cfg: Config) -> Workspace:
    """Initialise (if needed) and return the configured git+DVC workspace."""
    paths = cfg.base.paths
    remote = expand_env(paths.dvc_remote, "base.paths.dvc_remote")
    if "://" not in remote:
        remote = str(Path(remote).resolve())
    return init_workspace(Path(paths.workspace).resolve(), remote)


def labels_dir(cfg: Config) -> Path:
    """The workspace's label rounds folder (``data/labels``): the active-learning loop's
    output, locked by one run at a time (without initialising the workspace)."""
    return Path(cfg.base.paths.workspace).resolve() / Path(ROUND_DIR).parent
