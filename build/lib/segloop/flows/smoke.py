"""The ``smoke`` flow: N real images -> manifest -> versioned dataset -> label round 0."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from segloop import context, smoke
from segloop.config import Config, load_config
from segloop.flows._server import cancelled_on_interrupt
from segloop.runlock import output_lock
from segloop.tasks import smoke as t


@flow(name="smoke", on_crashed=[cancelled_on_interrupt])
def smoke_flow(pipeline: str | None = None, config: Config | None = None) -> smoke.SmokeResult:
    """Run the smoke pipeline from a config file (``pipeline``) or a ``Config`` object."""
    logger = get_run_logger()
    cfg = config if config is not None else load_config(pipeline)

    # 1. Find the data (CamVid at the configured root, downloading once if needed).
    root = t.locate_data(cfg)
    logger.info("dataset root: %s (split %s)", root, cfg.data.split)
    # 2. Open (or create) the git+DVC workspace.
    ws = t.open_workspace(cfg)
    # 3. Copy N validated images + labels and write the manifest Parquet.
    dest = smoke.dataset_dir(cfg, ws)
    # a second run on this dataset, or a loop writing label rounds, is refused
    with output_lock(dest, "smoke"), output_lock(context.labels_dir(cfg), "smoke"):
        n = t.build_dataset(cfg, root, dest)
        # 4. Version the dataset folder (dvc add, git commit, dvc push).
        commit = t.version_dataset(cfg, ws, dest, n, str(root))
        logger.info("dataset %s versioned at commit %s", dest, commit[:10])
        # 5. Write and version label round 0 (no-op if already committed).
        info = t.write_round0(cfg, ws, dest)
        # 6. Report.
        result = smoke.summarize(ws, dest, n, info)
        report = smoke.write_report(result, cfg.base.paths.reports)
        hint = smoke.restore_hint(result, pipeline)
        create_markdown_artifact(
            key="smoke-summary",
            markdown=f"# segloop smoke run\n\n- dataset: `{dest}` ({n} images, commit "
            f"`{commit[:10]}`)\n- report: `{report}`\n\n```\n{hint}\n```\n",
            description="Where the smoke run's dataset and label round live",
        )
        logger.info("%s", hint)
        return result


if __name__ == "__main__":
    import sys

    smoke_flow(sys.argv[1] if len(sys.argv) > 1 else None)
