"""``segloop models promote <round>``: a round's MLflow model into the model registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segloop.config import Config
from segloop.errors import ConfigError, DataError
from segloop.tracking.loop_runs import MODEL_TAG, LoopRun

ALIAS = "champion"


@dataclass(frozen=True)
class Promoted:
    name: str
    version: str
    alias: str
    run_id: str
    source: str


def promote(cfg: Config, k: int, alias: str = ALIAS) -> Promoted:
    """Register round ``k``'s logged model (the model trained on rounds 0..k) under
    ``tracking.registered_model`` and point ``alias`` at the new version. Promoting the
    same round again reuses its version."""
    if not cfg.tracking.enabled:
        raise ConfigError("tracking.mlflow is false: rounds are not logged to MLflow, so there "
                          "is no model to promote; set tracking.mlflow (e.g. true) and rerun "
                          "the active_learning flow")
    lr = LoopRun(cfg, Path(cfg.base.paths.workspace))
    client = lr.run.client
    rid = _round_with_model(lr, k)
    source = lr.run.tags_of(rid)[MODEL_TAG]
    name = cfg.tracking.registered_model
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="segloop active-learning models")
    versions = [v for v in client.search_model_versions(f"name = '{name}'")
                if v.run_id == rid]
    mv = versions[0] if versions else client.create_model_version(
        name, source=source, run_id=rid, tags={"segloop.round": str(k)},
        description=f"model trained on label rounds 0..{k:03d}")
    client.set_registered_model_alias(name, alias, mv.version)
    return Promoted(name, str(mv.version), alias, rid, source)


def _round_with_model(lr: LoopRun, k: int) -> str:
    run = lr.run
    rid = run.find_child(f"round/{k}")
    if rid is None:
        raise DataError(f"round {k} has no MLflow run in experiment {run.experiment_id}: run "
                        "the active_learning flow with tracking.mlflow set up to that round "
                        "first (`segloop rounds list` shows the committed rounds)")
    if MODEL_TAG not in run.tags_of(rid):
        raise DataError(f"round {k}'s MLflow run {rid} has no logged model (tracking."
                        "log_models was false, or its training has not finished): rerun the "
                        "flow with tracking.log_models: true")
    return rid
