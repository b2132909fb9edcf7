"""The ``synthesize`` flow: images of user-named classes with Stable Diffusion, versioned.

Every image has a seed derived from (class, template, index, global seed): a rerun with
the same config reproduces the dataset, and an interrupted run resumes by generating only
the images that are missing. Chunks of one class are tasks tagged ``gpu``.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from segloop.config import Config, load_config
from segloop.flows._server import cancelled_on_interrupt
from segloop.flows.task_runner import task_runner
from segloop.runlock import output_lock
from segloop.synth import contact, report, steps, store
from segloop.tasks import synthesize as t
from segloop.tracking.mlflow_runs import link_markdown, log_summary


@flow(name="synthesize", on_crashed=[cancelled_on_interrupt])
def synthesize_flow(pipeline: str | None = None, config: Config | None = None
                    ) -> dict[str, object]:
    """Generate (or finish generating) the configured synthetic dataset; returns a summary."""
    logger = get_run_logger()
    cfg = config if config is not None else load_config(pipeline)
    # 1. Workspace and plan: only the jobs not generated yet.
    ws = t.open_workspace(cfg)
    out = steps.output_dir(cfg, ws.root)
    with output_lock(out, "synthesize"):  # a second run on this output is refused
        plan = t.plan(cfg, out)
        logger.info("%d classes, %d images: %d already there, %d to generate in %d chunk(s) -> %s",
                    len(cfg.synth.classes), plan.total, plan.present, plan.todo,
                    len(plan.chunks), out)
        # 2. One task per (class, chunk), synth.concurrent_chunks at a time.
        progress = create_progress_artifact(progress=0.0, key="synthesize-progress",
                                            description="chunks generated (of this run's plan)")
        start = time.perf_counter()
        stats: list[steps.ChunkStats] = []
        width = cfg.synth.concurrent_chunks
        with task_runner(cfg.runner) as run:  # threads here, or Dask workers (config runner)
            for i in range(0, len(plan.chunks), width):
                wave = plan.chunks[i : i + width]
                futures = [run.submit(t.generate_chunk, cfg=cfg, out=out, chunk=chunk)
                           for chunk in wave]
                stats += [f.result() for f in futures]
                update_progress_artifact(progress, 100.0 * (i + len(wave)) / len(plan.chunks))
        seconds = time.perf_counter() - start
        # 3. Compact the manifest parts, count per class, draw the contact sheet.
        final = t.finalize(cfg, out)
        sheet = contact.contact_sheet(
            out, store.read_manifest(out), [c.label for c in cfg.synth.classes],
            cfg.synth.contact_per_class,
            Path(cfg.base.paths.reports) / "synthesize" / "contact_sheet.png")
        # 4. Version the dataset folder with DVC.
        commit = None
        if cfg.synth.version and final["images"] + final["rejected"]:
            commit = t.version_output(cfg, ws, out, final["images"])
        # 5. Report.
        summary = steps.summarize(plan, stats, final, seconds)
        summary["commit"] = commit
        summary["contact_sheet"] = str(sheet) if sheet else None
        path = report.write_summary(summary, cfg.base.paths.reports)
        url = log_summary(cfg, "synthesize", str(out), summary, [path, sheet],
                          ["models", "synth"])
        create_table_artifact(key="synthesize-classes", table=final["per_class"],
                              description="images kept and rejected per class")
        create_markdown_artifact(key="synthesize-summary",
                                 markdown=report.markdown(summary, sheet, commit)
                                 + link_markdown(url),
                                 description="what the synthesize run made")
        logger.info("%d images in %s (%d rejected); summary %s, contact sheet %s",
                    final["images"], out, final["rejected"], path, sheet)
        return summary


if __name__ == "__main__":
    import sys

    synthesize_flow(sys.argv[1] if len(sys.argv) > 1 else None)
