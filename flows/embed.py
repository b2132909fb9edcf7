"""The ``embed`` flow: grid-mode SAM over a dataset, mask embeddings and masks to Parquet.

Any dataset works: a CamVid split, an image folder, or a manifest table (e.g. the synthetic
dataset's). Images are split into shards; each shard is one task tagged ``gpu`` (create a
Prefect concurrency limit on that tag to share GPUs between runs), written atomically. A
rerun skips images already present, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from segloop.config import Config, load_config
from segloop.embed import report, steps
from segloop.errors import SegloopError
from segloop.flows._server import cancelled_on_interrupt
from segloop.flows.task_runner import task_runner
from segloop.runlock import output_lock
from segloop.tasks import embed as t
from segloop.tracking.mlflow_runs import link_markdown, log_summary


@flow(name="embed", on_crashed=[cancelled_on_interrupt])
def embed_flow(pipeline: str | None = None, config: Config | None = None) -> dict[str, object]:
    """Embed (or finish embedding) the configured dataset; returns the run summary."""
    logger = get_run_logger()
    cfg = config if config is not None else load_config(pipeline)
    # 1. Data and workspace.
    root = t.locate_data(cfg)
    ws = t.open_workspace(cfg)
    out = steps.output_url(cfg, ws.root)
    with output_lock(out, "embed"):  # a second run on this output is refused
        # 2. Plan: sweep leftovers of killed shards, skip images already present.
        plan = t.plan(cfg, root, out)
        logger.info("%s: %d images, %d already embedded, %d to do in %d shard(s) -> %s",
                    root, plan.total, plan.present, plan.todo, len(plan.shards), out)
        if plan.swept:
            logger.info("removed %d leftover file(s) of interrupted shards", len(plan.swept))
        # 3. One task per shard, embed.concurrent_shards at a time.
        progress = create_progress_artifact(progress=0.0, key="embed-progress",
                                            description="shards written (of this run's plan)")
        start = time.perf_counter()
        stats: list[steps.ShardStats] = []
        failures: list[tuple[int, BaseException]] = []
        width = cfg.embed.concurrent_shards
        with task_runner(cfg.runner) as run:  # threads here, or Dask workers (config runner)
            for i in range(0, len(plan.shards), width):
                wave = plan.shards[i : i + width]
                futures = [run.submit(t.embed_shard, cfg=cfg, out=out, shard=shard)
                           for shard in wave]
                for shard, future in zip(wave, futures, strict=True):
                    try:
                        stats.append(future.result())
                    except Exception as err:  # noqa: BLE001  (reported below, after the rest)
                        failures.append((shard.shard, err))
                        logger.error("shard %05d failed: %s", shard.shard, err)
                update_progress_artifact(progress, 100.0 * (i + len(wave)) / len(plan.shards))
        seconds = time.perf_counter() - start
        # 4. Version the output folder with DVC (whatever completed; also when this run
        # had nothing to do, in case a killed run left the folder unversioned: no change,
        # no commit).
        commit = None
        if cfg.embed.version and (stats or plan.present):
            commit = t.version_output(cfg, ws, out, plan.present + sum(s.images for s in stats),
                                      str(root))
        # 5. Report.
        summary = steps.summarize(plan, stats, seconds)
        summary["commit"] = commit
        path = report.write_summary(summary, cfg.base.paths.reports)
        url = log_summary(cfg, "embed", out, summary, [path], ["data", "models", "embed"])
        create_markdown_artifact(key="embed-summary",
                                 markdown=report.markdown(summary, commit) + link_markdown(url),
                                 description="what the embed run wrote")
        if stats:
            create_table_artifact(key="embed-shards", table=summary["shards"],
                                  description="one row per shard written")
        logger.info("embedded %d images (%.3f images/s), summary in %s",
                    summary["images_embedded"], summary["images_per_second"], path)
        if failures:
            shard, err = failures[0]
            raise SegloopError(f"{len(failures)} shard(s) failed (first: shard {shard:05d}: "
                               f"{err}); the others are written. Fix the cause and rerun: only "
                               "the missing images are embedded") from err
        return summary


if __name__ == "__main__":
    import sys

    embed_flow(sys.argv[1] if len(sys.argv) > 1 else None)
