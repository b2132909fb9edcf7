"""The active-learning loop in MLflow: one run per workspace (continued when a flow run
resumes), a nested run per round with its metrics, training loss curve, selection preview,
``round.json`` and model, and the loop's reports on the parent run."""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segloop.config import Config
from segloop.tracking import mlflow_runs
from segloop.tracking.mlflow_runs import FlowRun, flatten, numeric
from segloop.versioning.lineage import current_flow_run_id

if TYPE_CHECKING:
    from segloop.active.loop import ALContext

log = logging.getLogger(__name__)

FLOW = "active_learning"
MODEL_PATH = "model"  # artifact folder of a round's model
MODEL_TAG = "segloop.model_uri"
# the round record's values charted per round on the parent run (besides per-class IoU)
CHARTED = ("miou", "pixel_accuracy", "labelled_images", "labelled_pixels", "image_fraction",
           "pixel_fraction", "clicks", "cost", "pseudo_labelled_pixels",
           "pseudo_labelled_images", "train_seconds", "seconds_per_step", "score_seconds",
           "random_miou")


def _timed(method: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the call's seconds to ``self.seconds`` (what tracking costs the loop)."""

    @functools.wraps(method)
    def wrapper(self: LoopRun, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - began

    return wrapper


class LoopRun:
    """The MLflow side of one active-learning workspace (a no-op with tracking off).
    ``seconds``: the time its calls took in this flow run, logged as ``tracking_seconds``
    when the loop finishes."""

    def __init__(self, cfg: Config, workspace: Path) -> None:
        began = time.perf_counter()
        self.seconds = 0.0
        self.cfg = cfg
        ac = cfg.active
        self.run: FlowRun = mlflow_runs.start(cfg, FLOW, str(Path(workspace).resolve()),
                                  f"{ac.level} level, {ac.strategy} ({Path(workspace).name})")
        if self.run.enabled:
            self.run.log_params(flatten(cfg.to_dict()))
            self.run.set_tags({"segloop.level": ac.level, "segloop.strategy": ac.strategy,
                               "segloop.workspace": Path(workspace).name})
        self.seconds = time.perf_counter() - began

    @property
    def enabled(self) -> bool:
        return self.run.enabled

    def round_run(self, k: int) -> str | None:
        """Round ``k``'s nested run (found again or created)."""
        return self.run.child(f"round {k:03d}", f"round/{k}", {"segloop.round": k})

    @_timed
    def log_round(self, k: int, record: Mapping[str, Any], tags: Mapping[str, Any],
                  losses: list[float] | None = None, model: Any = None,
                  example: Any = None) -> None:
        """Round ``k``: ``record`` (the round's metrics record, as in
        ``metrics/rounds/round_NNN.json``) as metrics on its run and, step ``k``, on the
        loop's run; ``losses`` as the ``train_loss`` curve; ``model`` (an ``nn.Module``)
        with ``example`` (a float32 (1, 3, H, W) numpy input) as an MLflow model.
        A round logged before (a resumed flow run) is not logged twice."""
        rid = self.round_run(k)
        if rid is None:
            return
        logged = self.run.client.get_run(rid).data  # one read: metrics and tags
        have = logged.metrics
        values = _round_values(self.cfg, record)
        if "miou" not in have:
            self.run.log_metrics(values, step=k, run_id=rid)
            self.run.log_metrics({key: v for key, v in values.items()
                                  if key in CHARTED or key.startswith("iou.")}, step=k)
        if losses and "train_loss" not in have:
            self.run.log_series("train_loss", losses, run_id=rid)
        self.run.set_tags(tags, run_id=rid)
        if model is not None and self.cfg.tracking.log_models \
                and MODEL_TAG not in logged.tags:
            self._log_model(rid, model, example)
        self.run.finish("FINISHED", run_id=rid)

    @_timed
    def log_trained(self, ctx: ALContext, k: int, record: Mapping[str, Any]) -> None:
        """Round ``k`` of ``ctx``'s loop after its model is evaluated: :meth:`log_round` with
        the loss curve from the checkpoint, the model and tags linking the round's DVC tag,
        its labels commit, the checkpoint and the Prefect flow run."""
        if not self.enabled:
            return
        from segloop.active import loop
        from segloop.train.checkpoint import read_meta

        path = ctx.model_path(k)
        info = {r.number: r for r in loop.committed_rounds(ctx)}.get(k)
        tags = {"segloop.dvc_tag": info.tag if info else None,
                "segloop.labels_commit": info.commit if info else None,
                "segloop.checkpoint": path.relative_to(ctx.ws.root).as_posix(),
                "prefect.flow_run_id": current_flow_run_id()}
        model = loop.load_model(ctx, k) if self.cfg.tracking.log_models else None
        h, w = ctx.pool.arrays.hw
        self.log_round(k, record, tags, read_meta(path).get("losses"), model,
                       np.zeros((1, 3, h, w), np.float32))

    @_timed
    def log_committed(self, ctx: ALContext, n: int, preview: Path | None = None) -> None:
        """Round ``n``'s ``round.json`` (what was picked, by which strategy) and its
        selection preview (PNG) as artifacts of its run, under ``selection/``."""
        if not self.enabled:
            return
        rid = self.round_run(n)
        for path in (ctx.round_dir(n) / "round.json", preview):
            if path is not None:
                self.run.log_artifact(path, "selection", run_id=rid)

    @_timed
    def log_reports(self, paths: Mapping[str, Path]) -> None:
        """The loop's reports (rounds table, curve, metrics) on its own run."""
        for path in paths.values():
            self.run.log_artifact(path, "reports")

    def finish(self, status: str) -> None:
        """Log ``tracking_seconds``; ``complete``: the loop's run FINISHED,
        ``waiting_for_labels``: left RUNNING."""
        began = time.perf_counter()
        self.run.log_metrics({"tracking_seconds": self.seconds})
        if status == "complete":
            self.run.finish("FINISHED")
        self.seconds += time.perf_counter() - began

    def failed(self) -> None:
        """Mark the loop's run FAILED (the flow raised; a rerun sets it RUNNING again). An
        MLflow error here is logged, not raised: the flow's own error is the one to see."""
        try:
            self.run.log_metrics({"tracking_seconds": self.seconds})
            self.run.finish("FAILED")
        except Exception as exc:  # noqa: BLE001 - never hide the flow's error
            log.warning("could not mark MLflow run %s FAILED: %s", self.run.run_id, exc)

    def _log_model(self, rid: str, model: Any, example: Any) -> None:
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        from segloop.versioning.lineage import code_identity

        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model(torch.from_numpy(example).to(next(model.parameters()).device))
        model.train(was_training)
        signature = infer_signature(example, out.detach().cpu().numpy())
        version = code_identity().get("segloop_version")
        reqs = [f"torch=={torch.__version__.split('+')[0]}"]
        if version:
            reqs.append(f"segloop=={version}")
        with tempfile.TemporaryDirectory(prefix="segloop-mlflow-") as tmp:
            folder = Path(tmp) / MODEL_PATH
            # pickle: the nn.Module itself (segloop's classes), fast to write; "pt2" (MLflow's
            # default) traces the graph with torch.export, seconds per round on a CPU
            # (its warning that pickles run code when loaded, once per round, is silenced:
            # said once in the README, and the registry holds only this loop's own models)
            quiet = logging.getLogger("mlflow.pytorch")
            level = quiet.level
            quiet.setLevel(logging.ERROR)
            try:
                mlflow.pytorch.save_model(model.cpu(), str(folder), signature=signature,
                                          pip_requirements=reqs, serialization_format="pickle")
            finally:
                quiet.setLevel(level)
            self.run.client.log_artifacts(rid, str(folder), MODEL_PATH)
        uri = f"runs:/{rid}/{MODEL_PATH}"
        self.run.set_tags({MODEL_TAG: uri}, run_id=rid)
        log.info("logged the round's model to MLflow as %s", uri)


def _round_values(cfg: Config, record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a round record, plus ``cost`` (pixels + clicks x click cost) and
    ``seconds_per_step``."""
    values = numeric({k: v for k, v in record.items() if k != "round"})
    values["cost"] = (float(record.get("labelled_pixels", 0))
                      + float(record.get("clicks", 0)) * cfg.active.click_cost_pixels)
    if record.get("train_seconds"):
        values["seconds_per_step"] = float(record["train_seconds"]) / cfg.train.steps
    return values
