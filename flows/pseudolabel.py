"""The ``pseudolabel`` flow: semantic pseudo-labels (seeds) for target images.

Methods: ``usam`` (a MIL head trained on the synthetic dataset's mask embeddings, then an
uncertainty-distilled student; U-SAM, Kundu et al.; docs/algorithms.md §2), ``sam_clip``
(CLIP on each masked image), both on the SAM masks of an embed output, and ``maskdiffusion``
(a frozen Stable Diffusion's features and cross-attention, on the data section's images;
Kawano and Aoki 2024; §4b). ``pseudolabel.refine: g4seg`` then refines the round with G4Seg
(Zhang et al. 2025; §4) into a round of its own, ``<method>-g4seg``;
``pseudolabel.refine_input`` refines a given round instead. The output is a seed round
``data/pseudolabels/<method>/round_NNN/`` versioned like a label round; the active-learning
flow can train on it (``active.pseudolabels``). A rerun with the same settings and inputs
is a no-op; an interrupted run resumes (trained heads and labelled chunks are kept in a
staging folder).
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
from segloop.errors import ConfigError
from segloop.flows._server import cancelled_on_interrupt
from segloop.flows.task_runner import task_runner
from segloop.pseudolabel import finish
from segloop.pseudolabel.plan import PseudoPlan
from segloop.tasks import pseudolabel as t
from segloop.tracking.mlflow_runs import link_markdown, log_summary
from segloop.versioning import Workspace


@flow(name="pseudolabel", on_crashed=[cancelled_on_interrupt])
def pseudolabel_flow(pipeline: str | None = None, config: Config | None = None
                     ) -> dict[str, object]:
    """Make (or finish, or confirm) a pseudo-label round, then refine it if configured;
    returns the run summary (a refinement's under ``"refined"``)."""
    cfg = config if config is not None else load_config(pipeline)
    p = cfg.pseudolabel
    # 1. Data (for pixels and ground truth) and workspace.
    root = t.locate_data(cfg)
    ws = t.open_workspace(cfg)
    if p.refine_input is not None:
        if p.refine == "none":
            raise ConfigError("pseudolabel.refine_input names a round to refine, but "
                              "pseudolabel.refine is none: set refine: g4seg (or drop "
                              "refine_input)")
        summary: dict[str, object] = {"refined": _refine(cfg, ws, root, p.refine_input)}
        return summary
    with finish.hold_outputs(cfg, ws.root):  # a second run on this output is refused
        # 2. Plan: inputs, labels and their class ids, round number, what is staged already.
        plan = t.make_plan(cfg, ws, root)
        summary = _make_round(cfg, ws, root, plan)
    if p.refine == "g4seg":
        folder = Path(str(summary["round_path"])).relative_to(ws.root).as_posix()
        summary["refined"] = _refine(cfg, ws, root, folder)
    return summary


def _make_round(cfg: Config, ws: Workspace, root: str, plan: PseudoPlan,
                refiner: bool = False) -> dict[str, object]:
    """Steps 3-7 for a planned round (a method's, or a refinement's)."""
    logger = get_run_logger()
    sub = "refined" if refiner else ""
    if plan.existing is not None:
        logger.info("%s round %03d already holds these settings and inputs (%s): nothing "
                    "to do", plan.method, plan.round, plan.existing.tag)
        metrics = t.confirm(ws, plan)  # and record them if a kill left them out
        summary = finish.summarize(plan, [], plan.existing, metrics, 0.0)
        finish.write_reports(summary, cfg.base.paths.reports, sub)
        return summary
    logger.info("%s round %03d: %d target images in %d chunk(s), %d staged already%s",
                plan.method, plan.round, len(plan.image_ids), len(plan.chunks),
                len(plan.done), " (resuming)" if plan.resumed else "")
    # 3. U-SAM: teacher, tau, student (loaded if an interrupted run trained them).
    training = t.train_heads(cfg, plan) if plan.method == "usam" else None
    if training:
        logger.info("U-SAM heads on %d synthetic images; tau = %s (%s)", training["images"],
                    training.get("tau"), training.get("tau_rule"))
    # 4. Label (or refine) the target images chunk by chunk.
    progress = create_progress_artifact(progress=0.0, key=f"pseudolabel{sub}-progress",
                                        description="target chunks done")
    start = time.perf_counter()
    stats = []
    with task_runner(cfg.runner) as run:
        # one chunk at a time in this process (each holds the models); every chunk at once
        # on Dask, one per worker slot (config runner)
        width = len(plan.todo) if run.kind == "dask" else 1
        for i in range(0, len(plan.todo), max(1, width)):
            wave = plan.todo[i : i + max(1, width)]
            futures = [run.submit(t.refine_chunk, cfg=cfg, p=plan, ws=ws, root=root, k=k)
                       if refiner else run.submit(t.label_chunk, cfg=cfg, p=plan, root=root, k=k)
                       for k in wave]
            stats += [f.result() for f in futures]
            update_progress_artifact(progress, 100.0 * (i + len(wave)) / len(plan.todo))
    seconds = time.perf_counter() - start
    # 5. Evaluate against ground truth where the target dataset has it.
    metrics = t.evaluate(cfg, plan, root) if cfg.pseudolabel.evaluate else None
    # 6. Commit the round (dvc add, git commit + tag, push) and its metrics.
    info = t.commit(cfg, ws, plan, training, metrics)
    # 7. Report.
    summary = finish.summarize(plan, stats, info, metrics, seconds)
    path = finish.write_reports(summary, cfg.base.paths.reports, sub)
    url = log_summary(cfg, "pseudolabel", str(info.path), summary, [path],
                      ["data", "models", "pseudolabel"])
    create_markdown_artifact(key=f"pseudolabel{sub}-summary",
                             markdown=finish.markdown(summary) + link_markdown(url),
                             description="what the pseudolabel run made")
    if metrics:
        create_table_artifact(key=f"pseudolabel{sub}-iou", table=finish.per_class_rows(metrics),
                              description="IoU and AP50 per class against ground truth")
    logger.info("%s round %03d in %s (%s); summary %s", plan.method, plan.round, info.path,
                info.tag, path)
    return summary


def _refine(cfg: Config, ws: Workspace, root: str, rel: str) -> dict[str, object]:
    """G4Seg refinement of the seed round at ``rel`` into ``<method>-g4seg``."""
    plan = t.plan_refinement(cfg, ws, root, rel)
    with finish.hold_outputs(cfg, ws.root, plan.paths):
        return _make_round(cfg, ws, root, plan, refiner=True)


if __name__ == "__main__":
    import sys

    pseudolabel_flow(sys.argv[1] if len(sys.argv) > 1 else None)
