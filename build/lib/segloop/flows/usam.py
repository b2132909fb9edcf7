"""The ``usam`` flow: from class names to versioned pseudo-labels on your images.

1. ``synthesize``: Stable Diffusion images of the classes in ``synth.classes``.
2. ``embed`` the synthetic images (their mask embeddings train U-SAM's head).
3. ``embed`` the target images (the ``data`` section).
4. ``pseudolabel``: train the teacher and student heads, label the targets, evaluate
   against ground truth where it exists, commit the seed round.

Every step is its own subflow with its own resume rules, so a rerun after a failure
redoes only what is missing; with ``pseudolabel.method: sam_clip`` steps 1-2 are skipped.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from segloop import context
from segloop.config import Config, load_config
from segloop.flows._server import cancelled_on_interrupt
from segloop.flows.embed import embed_flow
from segloop.flows.pseudolabel import pseudolabel_flow
from segloop.flows.synthesize import synthesize_flow
from segloop.pseudolabel.chain import synthetic_embed_config, target_embed_config


@flow(name="usam", on_crashed=[cancelled_on_interrupt])
def usam_flow(pipeline: str | None = None, config: Config | None = None) -> dict[str, object]:
    """Run the chain; returns the summaries of its steps."""
    logger = get_run_logger()
    cfg = config if config is not None else load_config(pipeline)
    root = context.open_workspace(cfg).root
    steps: dict[str, object] = {}
    if cfg.pseudolabel.method == "usam":
        # 1. Synthetic images of the named classes.
        steps["synthesize"] = synthesize_flow(config=cfg)
        # 2. Their SAM mask embeddings.
        steps["embed_synthetic"] = embed_flow(config=synthetic_embed_config(cfg, root))
    # 3. The target images' SAM mask embeddings.
    steps["embed_target"] = embed_flow(config=target_embed_config(cfg, root))
    # 4. Pseudo-labels, evaluation, the seed round.
    steps["pseudolabel"] = pseudolabel_flow(config=cfg)
    logger.info("usam chain done: %s", {k: type(v).__name__ for k, v in steps.items()})
    return steps


if __name__ == "__main__":
    import sys

    usam_flow(sys.argv[1] if len(sys.argv) > 1 else None)
