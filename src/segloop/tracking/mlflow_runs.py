"""MLflow runs of segloop's flows (``tracking.mlflow``; the extra ``segloop[mlflow]``).

Everything goes through :class:`mlflow.MlflowClient` with explicit run ids (no fluent
global run), so a flow's threads and other flows in the process never log into the wrong
run. A run is found again by its ``segloop.run_key`` tag, so a resumed flow continues the
run it started instead of opening a duplicate.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from segloop.config import Config
from segloop.errors import ConfigError
from segloop.versioning.lineage import code_identity, current_flow_run_id

log = logging.getLogger(__name__)

LOCAL_DIR = ("work", "mlflow")  # under the workspace: git-ignored, never committed
RUN_KEY = "segloop.run_key"
BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's log_batch limits
PARAM_CHARS = 6000


def require_mlflow() -> Any:
    """The ``mlflow`` module, or a :class:`ConfigError` saying how to install it."""
    # no usage telemetry (a background thread posting from every process), unless asked for
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow
    except ImportError as exc:
        raise ConfigError(
            "tracking.mlflow is set but MLflow is not installed: run `pip install "
            "'segloop[mlflow]'` (or set tracking.mlflow: false)") from exc
    return mlflow


def local_store(cfg: Config) -> Path:
    """The folder of the local store of ``tracking.mlflow: true`` (created)."""
    root = Path(cfg.base.paths.workspace).expanduser().resolve().joinpath(*LOCAL_DIR)
    root.mkdir(parents=True, exist_ok=True)
    return root


def tracking_uri(cfg: Config) -> str:
    """The tracking URI ``tracking.mlflow`` names (``sqlite:///<workspace>/work/mlflow/
    mlflow.db`` for ``true``)."""
    if cfg.tracking.mlflow is True:
        return f"sqlite:///{local_store(cfg) / 'mlflow.db'}"
    if cfg.tracking.mlflow is False:
        raise ConfigError("tracking.mlflow is false: no MLflow store is configured")
    return str(cfg.tracking.mlflow)


def experiment_name(cfg: Config, flow: str) -> str:
    return cfg.tracking.experiment or f"segloop-{flow}"


def metric_key(name: str) -> str:
    """``name`` with the characters MLflow refuses in keys replaced by ``_``."""
    return re.sub(r"[^\w\-. /]", "_", name)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}`` (values as MLflow params: strings, cut to
    MLflow's 6000 characters)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:PARAM_CHARS]
    return out


def numeric(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers in a (nested) record, keyed ``a.b`` (bools and None left out)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = metric_key(f"{prefix}{key}")
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            out[name] = float(value)
        elif isinstance(value, Mapping):
            out.update(numeric(value, f"{name}."))
    return out


class FlowRun:
    """One MLflow run of a flow; every method is a no-op when tracking is off (``client`` is
    None), so flows call it unconditionally."""

    def __init__(self, client: Any = None, run_id: str | None = None,
                 experiment_id: str | None = None, ui_url: str = "") -> None:
        self.client, self.run_id, self.experiment_id, self.ui_url = (
            client, run_id, experiment_id, ui_url)

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def url(self, run_id: str | None = None) -> str | None:
        """The run's page in the MLflow UI (``tracking.ui_url``)."""
        if not self.enabled:
            return None
        return (f"{self.ui_url.rstrip('/')}/#/experiments/{self.experiment_id}/runs/"
                f"{run_id or self.run_id}")

    def log_params(self, params: Mapping[str, str], run_id: str | None = None) -> None:
        """Log ``params``; those the run already holds are skipped (MLflow params are
        immutable: a resumed run with a changed value keeps the first, with a warning)."""
        if not self.enabled:
            return
        from mlflow.entities import Param

        rid = run_id or self.run_id
        have = self.client.get_run(rid).data.params
        changed = sorted(k for k, v in params.items() if k in have and have[k] != v)
        if changed:
            log.warning("MLflow run %s keeps its first values of %d changed param(s): %s",
                        rid, len(changed), ", ".join(changed[:10]))
        new = [Param(k, v) for k, v in params.items() if k not in have]
        for part in _chunks(new, BATCH["params"]):
            self.client.log_batch(rid, params=part)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0,
                    run_id: str | None = None) -> None:
        if not self.enabled or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(metric_key(k), float(v), now, step) for k, v in metrics.items()]
        for part in _chunks(rows, BATCH["metrics"]):
            self.client.log_batch(run_id or self.run_id, metrics=part)

    def log_series(self, key: str, values: Iterable[float], run_id: str | None = None) -> None:
        """``values[i]`` as metric ``key`` at step ``i`` (a training loss curve)."""
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(metric_key(key), float(v), now, i) for i, v in enumerate(values)]
        for part in _chunks(rows, BATCH["metrics"]):
            self.client.log_batch(run_id or self.run_id, metrics=part)

    def set_tags(self, tags: Mapping[str, Any], run_id: str | None = None) -> None:
        if not self.enabled:
            return
        from mlflow.entities import RunTag

        rows = [RunTag(k, str(v)) for k, v in tags.items() if v is not None]
        for part in _chunks(rows, BATCH["tags"]):
            self.client.log_batch(run_id or self.run_id, tags=part)

    def log_artifact(self, path: str | Path, folder: str | None = None,
                     run_id: str | None = None) -> None:
        if self.enabled and Path(path).exists():
            self.client.log_artifact(run_id or self.run_id, str(path), folder)

    def tags_of(self, run_id: str | None = None) -> dict[str, str]:
        return dict(self.client.get_run(run_id or self.run_id).data.tags) if self.enabled \
            else {}

    def child(self, name: str, key: str, tags: Mapping[str, Any] | None = None) -> str | None:
        """The id of this run's nested run ``key`` (found again, or created)."""
        if not self.enabled:
            return None
        assert self.experiment_id is not None and self.run_id is not None
        return _find(self.client, self.experiment_id, f"{self.run_id}/{key}") or _create(
            self.client, self.experiment_id, f"{self.run_id}/{key}", name,
            {"mlflow.parentRunId": self.run_id, **(tags or {})})

    def find_child(self, key: str) -> str | None:
        """The id of this run's nested run ``key``, or None if it was never created."""
        if not self.enabled:
            return None
        assert self.experiment_id is not None
        return _find(self.client, self.experiment_id, f"{self.run_id}/{key}")

    def finish(self, status: str = "FINISHED", run_id: str | None = None) -> None:
        if self.enabled:
            self.client.set_terminated(run_id or self.run_id, status)


def start(cfg: Config, flow: str, key: str, name: str) -> FlowRun:
    """The MLflow run of ``flow`` for ``key`` (e.g. the workspace of a loop, the output of
    an embed run): found again by its tag when a run resumes, created otherwise, marked
    RUNNING, tagged with the Prefect flow-run id and the code's git sha. Tracking off: a
    no-op :class:`FlowRun`."""
    if not cfg.tracking.enabled:
        return FlowRun()
    mlflow = require_mlflow()
    uri = tracking_uri(cfg)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp_id = _experiment(client, cfg, experiment_name(cfg, flow))
    run_key = f"{flow}\0{key}"
    code = code_identity()
    run_id = _find(client, exp_id, run_key) or _create(client, exp_id, run_key, name, {
        "segloop.flow": flow, "segloop.version": code.get("segloop_version")})
    client.update_run(run_id, status="RUNNING")
    run = FlowRun(client, run_id, exp_id, cfg.tracking.ui_url)
    run.set_tags({"prefect.flow_run_id": current_flow_run_id(), "git.sha": code.get("sha"),
                  "git.dirty": code.get("dirty")})
    log.info("MLflow run %s (experiment %s, %s)", run_id, experiment_name(cfg, flow), uri)
    return run


def _experiment(client: Any, cfg: Config, name: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise ConfigError(
                f"MLflow experiment {name!r} is deleted in {tracking_uri(cfg)}: restore it "
                "(`mlflow experiments restore`) or set tracking.experiment to another name")
        return str(exp.experiment_id)
    location = ((local_store(cfg) / "artifacts").as_uri() if cfg.tracking.mlflow is True
                else None)
    try:
        # experimentKind: the MLflow UI opens it on its runs (model training), not on the
        # GenAI traces overview
        return str(client.create_experiment(name, artifact_location=location, tags={
            "mlflow.experimentKind": "custom_model_development"}))
    except MlflowException:  # created by another process meanwhile
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


def _digest(key: str) -> str:
    """The ``segloop.run_key`` tag of ``key`` (hashed: keys hold paths and quotes)."""
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def _find(client: Any, exp_id: str, key: str) -> str | None:
    found = client.search_runs([exp_id], filter_string=f"tags.`{RUN_KEY}` = '{_digest(key)}'",
                               max_results=1)
    return str(found[0].info.run_id) if found else None


def _create(client: Any, exp_id: str, key: str, name: str, tags: Mapping[str, Any]) -> str:
    run = client.create_run(exp_id, run_name=name, tags={
        RUN_KEY: _digest(key), **{k: str(v) for k, v in tags.items() if v is not None}})
    return str(run.info.run_id)


def _chunks(rows: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def log_summary(cfg: Config, flow: str, key: str, summary: Mapping[str, Any],
                files: Iterable[str | Path | None] = (), sections: Iterable[str] = ()
                ) -> str | None:
    """A flow's summary as one MLflow run (found again for the same ``key``, e.g. its output
    folder): ``sections`` of the config as params, the summary's numbers as metrics (step
    0, replaced by a later run of the same key), ``files`` (reports, plots) as artifacts.
    Returns the run's URL in the MLflow UI, or None with tracking off."""
    if not cfg.tracking.enabled:
        return None
    # named by the output's last two parts: "pseudolabel (usam/round_000)"
    run = start(cfg, flow, key, f"{flow} ({'/'.join(Path(key).parts[-2:])})")
    dumped = cfg.to_dict()
    run.log_params(flatten({s: dumped[s] for s in ("base", *sections)}))
    run.log_metrics(numeric(summary))
    run.set_tags({"segloop.commit": summary.get("commit")})
    for path in files:
        if path is not None:
            run.log_artifact(path, "reports")
    run.finish("FINISHED")
    return run.url()


def link_markdown(url: str | None, name: str = "MLflow run") -> str:
    """A markdown line linking a Prefect artifact to ``url`` ("" without one)."""
    return f"\n\n{name}: [{url}]({url})\n" if url else ""
