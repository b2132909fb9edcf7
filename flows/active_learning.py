"""The ``active_learning`` flow: train, score the pool, select, label, version, repeat.

Round 0 is the initial set (``active.initial_strategy``: TypiClust on image thumbnails, or
random); every later round is chosen by the configured strategy from the model trained on
all rounds before it. Rerunning the flow resumes after the last
committed round (checkpoints are reused, nothing is labelled or tagged twice). With
``active.annotator: human`` the flow exports the round's tasks and stops; ``segloop labels
import`` commits the finished labels and the next run goes on from there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from segloop import context
from segloop.active import human, loop, report
from segloop.config import Config, load_config
from segloop.flows._server import cancelled_on_interrupt
from segloop.flows.task_runner import task_runner
from segloop.runlock import output_lock
from segloop.tasks import active as t
from segloop.tracking.fiftyone_setup import require_fiftyone
from segloop.tracking.loop_runs import LoopRun


@dataclass
class ALResult:
    """How the run ended: ``complete`` or ``waiting_for_labels`` (tasks in ``pending``)."""

    status: str
    rounds: list[dict] = field(default_factory=list)
    reports: dict[str, str] = field(default_factory=dict)
    pending: str | None = None
    workspace: str = ""


@flow(name="active_learning", on_crashed=[cancelled_on_interrupt])
def active_learning_flow(pipeline: str | None = None, config: Config | None = None
                         ) -> ALResult:
    """Run (or resume) the loop from a config file (``pipeline``) or a ``Config`` object."""
    logger = get_run_logger()
    cfg = config if config is not None else load_config(pipeline)
    if cfg.tracking.fiftyone:  # fail now, not after the rounds
        require_fiftyone()
    # one loop per workspace; mapped work on the configured task runner (config `runner`:
    # threads here, or Dask workers), handing back file references
    with output_lock(context.labels_dir(cfg), "active_learning"), \
            task_runner(cfg.runner) as run:
        # 1. Data, workspace, pool (and regions) at the working resolution: the caches'
        # missing shards as mapped tasks, then the context that reads them.
        root, plans = t.plan_caches(cfg)
        cached = [run.submit(t.cache_shard, cfg=cfg, root=root, plan=p, shard=k)
                  for p in plans for k in p.shards]
        if cached:
            written = sum(f.result() for f in cached)
            logger.info("cached %d images in %d shard(s) (%s runner)", written, len(cached),
                        run.kind)
        ctx = t.prepare(cfg)
        tracked = LoopRun(cfg, ctx.ws.root)  # MLflow (tracking.mlflow); a no-op when off
        try:
            return _rounds(ctx, run, tracked, logger, pipeline)
        except BaseException:
            tracked.failed()  # the MLflow run shows FAILED; a rerun continues it (RUNNING)
            raise


def _rounds(ctx: loop.ALContext, run, tracked: LoopRun, logger,  # type: ignore[no-untyped-def]
            pipeline: str | None) -> ALResult:
    """Rounds from the last committed one on: steps 2-4 of the flow."""
    cfg, ac = ctx.cfg, ctx.cfg.active
    committed = [r.number for r in loop.committed_rounds(ctx)]
    logger.info("pool: %d images at %s, level %s, strategy %s; committed rounds: %s",
                len(ctx.pool), ctx.pool.arrays.hw, ac.level, ac.strategy, committed or "none")
    progress = create_progress_artifact(
        progress=0.0, key="active-learning-progress",
        description="label rounds done (of active.rounds + 1)")
    # 2. Round 0: the initial set (random, or TypiClust on image thumbnails).
    if not committed:
        first = ac.initial_strategy
        if ac.annotator == "human" and human.pending_exists(ctx, 0):
            return _wait(ctx, 0, None, first, logger, pipeline, tracked)
        selection, scores0 = t.initial_selection(ctx)
        preview = t.preview_selection(ctx, 0, selection)
        if ac.annotator == "human":
            return _wait(ctx, 0, selection, first, logger, pipeline, tracked)
        labels = t.simulate_labels(ctx, selection)
        t.commit_labels(ctx, 0, selection, labels, first, ac.annotator, scores0)
        tracked.log_committed(ctx, 0, preview)
        committed = [0]
    # 3. Per round: train on rounds 0..k, evaluate, score, select, label, commit round k+1.
    # Training, evaluation and scoring (by shard) run on the runner.
    new_rounds = 0
    for k in range(max(committed), ac.rounds + 1):
        update_progress_artifact(progress, 100.0 * k / (ac.rounds + 1))
        state = t.label_state(ctx, k)
        trained = run.call(t.train, cfg=cfg, k=k)
        compare = k == ac.rounds and ac.compare_random and ac.annotator != "human"
        metrics, *baseline = run.call_all(
            [(t.evaluate, {"cfg": cfg, "k": k})]
            + ([(t.random_baseline, {"cfg": cfg, "k": k})] if compare else []))
        extra = {"train_seconds": trained.seconds}
        if baseline:
            extra.update(baseline[0])
            logger.info("random selection at the same budget: val mIoU %.4f",
                        extra["random_miou"])
        record = t.record_metrics(ctx, k, state, metrics, extra)
        tracked.log_trained(ctx, k, record)
        logger.info("round %d: %.2f%% of pixels labelled, val mIoU %.4f", k,
                    100 * state.queried_pixels / ctx.pool.total_pixels, metrics.miou)
        if k == ac.rounds:
            break
        if ac.annotator == "human" and human.pending_exists(ctx, k + 1):
            logger.info("round %d is exported and waits for labels", k + 1)
            return _wait(ctx, k + 1, None, ac.strategy, logger, pipeline, tracked)
        started = time.perf_counter()
        shards = [run.submit(t.score_shard, cfg=cfg, n=k + 1, start=a, stop=b)
                  for a, b in loop.scan_shards(ctx)]
        selection, scores, seconds = t.select(ctx, state, k + 1,
                                              [f.result() for f in shards], started)
        logger.info("round %d: scored the pool (%d shard(s), %s runner) in %.1f s, "
                    "selected %s", k + 1, len(shards), run.kind, seconds,
                    selection.to_dict())
        if not selection.units:
            logger.info("the pool is fully labelled: stopping after round %d", k)
            break
        preview = t.preview_selection(ctx, k + 1, selection)
        if ac.annotator == "human":
            return _wait(ctx, k + 1, selection, ac.strategy, logger, pipeline, tracked)
        labels = t.simulate_labels(ctx, selection)
        t.commit_labels(ctx, k + 1, selection, labels, ac.strategy, ac.annotator,
                        scores)
        tracked.log_committed(ctx, k + 1, preview)
        new_rounds += 1
        if ac.rounds_per_run is not None and new_rounds >= ac.rounds_per_run:
            logger.info("committed %d new round(s) (active.rounds_per_run): the next "
                        "run trains on them and goes on", new_rounds)
            break
    update_progress_artifact(progress, 100.0)
    # 4. Report: rounds table, summary, curve.
    return _publish(ctx, "complete", tracked)


def _wait(ctx: loop.ALContext, n: int, selection, strategy: str, logger,  # type: ignore[no-untyped-def]
          pipeline: str | None, tracked: LoopRun) -> ALResult:
    """Export round ``n``'s tasks (unless already exported) and report that labels are due."""
    pending = (human.export_round(ctx, n, selection, strategy) if selection is not None
               else ctx.work_dir(n) / human.TASKS)
    flag = f" --pipeline {pipeline}" if pipeline else ""
    logger.info("round %d selected: label the tasks in %s, then run `segloop labels import "
                "%s/<finished file>%s`; the next flow run continues from there", n, pending,
                pending, flag)
    result = _publish(ctx, "waiting_for_labels", tracked)
    result.pending = str(pending)
    return result


def _publish(ctx: loop.ALContext, status: str, tracked: LoopRun) -> ALResult:
    title = (f"segloop active learning: {ctx.cfg.active.level} level, "
             f"{ctx.cfg.active.strategy}")
    rows = report.rounds_table(loop.committed_rounds(ctx), ctx.classes.names)
    out = Path(ctx.cfg.base.paths.reports) / "active_learning"
    paths = report.write_reports(rows, out, title)
    if rows:
        create_table_artifact(key="active-learning-rounds", table=rows,
                              description="every round: labelled share, mIoU, per-class IoU")
    links = {"MLflow run": tracked.run.url()}
    if ctx.cfg.tracking.fiftyone:
        dataset, links["FiftyOne dataset"] = t.fiftyone_export(ctx)
        tracked.run.set_tags({"segloop.fiftyone_dataset": dataset,
                              "segloop.fiftyone_url": links["FiftyOne dataset"]})
    tracked.log_reports(paths)
    tracked.finish(status)
    create_markdown_artifact(key="active-learning-summary",
                             markdown=report.markdown_summary(rows, title, paths["plot"], links))
    return ALResult(status=status, rounds=rows, reports={k: str(v) for k, v in paths.items()},
                    workspace=str(ctx.ws.root))


if __name__ == "__main__":
    import sys

    active_learning_flow(sys.argv[1] if len(sys.argv) > 1 else None)
