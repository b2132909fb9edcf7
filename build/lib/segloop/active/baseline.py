"""Random selection at the same budget: what the loop's last round is compared with.

With the simulated annotator, ``active.compare_random`` trains one more model, with the
same recipe, on randomly chosen units that cost what the loop's labels cost (images at image
level; pixels plus clicks at region level), so a run shows whether its selection beat
random sampling. Its checkpoint is scratch (``work/round_NNN/random_baseline.safetensors``,
reused while its recipe holds), never versioned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from segloop.active.fit import fit_round
from segloop.active.scoring import candidate_units_random
from segloop.active.seeds import training_labels
from segloop.active.selection import Budget, select
from segloop.active.state import LabelState
from segloop.train.checkpoint import load_checkpoint, read_meta, save_checkpoint
from segloop.train.factory import build_from_config, model_recipe

if TYPE_CHECKING:
    from segloop.active.loop import ALContext


def same_budget(ctx: ALContext, state: LabelState) -> Budget:
    """What the loop's labels after some round cost, as a budget for random units."""
    ac = ctx.cfg.active
    if ac.level == "image":
        return Budget(units=state.labelled_images)
    cost = state.queried_pixels + state.clicks * ac.click_cost_pixels
    return Budget(pixels=int(cost), click_cost_pixels=ac.click_cost_pixels)


def random_baseline(ctx: ALContext, k: int, state: LabelState,
                    progress: bool = True) -> dict[str, Any]:
    """Train on random units at the budget of rounds 0..k and evaluate: ``random_miou``,
    ``random_labelled_pixels`` and ``random_labelled_images``."""
    from segloop.active.loop import evaluate_model, simulated_labels, training_recipe

    cfg, ac = ctx.cfg, ctx.cfg.active
    ignore = ctx.classes.ignore_index
    gen = torch.Generator().manual_seed(cfg.base.seed * 1_000_003 + 7919 * (k + 1))
    empty = LabelState.empty(ctx.pool, ignore)
    units = candidate_units_random(ctx.pool, empty, ac.level, gen)
    selection = select(units, same_budget(ctx, state))
    labels = simulated_labels(ctx.pool, selection,
                              "exact" if ac.annotator == "exact" else "dominant", ignore)
    for i, label in labels.items():
        empty.apply(ctx.pool, i, [u.region_id for u in selection.units if u.image_index == i],
                    label)
    seed = cfg.base.seed * 1000 + 500 + k
    recipe = {**model_recipe(cfg.train, ctx.classes.num_classes), **training_recipe(cfg),
              "seed": seed, "units": [(u.image_index, u.region_id) for u in selection.units]}
    path = ctx.work_dir(k) / "random_baseline.safetensors"
    if path.is_file() and read_meta(path).get("recipe") == recipe:
        model = build_from_config(cfg.train, ctx.classes.num_classes)
        load_checkpoint(model, path)
        model = model.to(ctx.device)
    else:
        target = training_labels(empty.labels, empty.queried, ctx.seeds)
        model, _ = fit_round(ctx.pool, empty, target, cfg, seed, ctx.device,
                             progress=progress, desc=f"random baseline at round {k}'s budget")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, path, {"recipe": recipe})
    metrics = evaluate_model(ctx, model)
    return {"random_miou": metrics.miou, "random_labelled_pixels": empty.queried_pixels,
            "random_labelled_images": empty.labelled_images}
