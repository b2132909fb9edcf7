"""What makes a round's checkpoint reusable: the training recipe's keys."""

from __future__ import annotations

from segloop.active.loop import training_recipe
from segloop.config import parse_config


def test_recipe_names_non_default_class_weights_and_loss_only() -> None:
    base = training_recipe(parse_config({}))
    assert "class_weights" not in base and "loss" not in base  # defaults: keys unchanged
    weighted = training_recipe(parse_config({"train": {"class_weights": "inverse_sqrt"}}))
    assert weighted["class_weights"] == "inverse_sqrt"
    seeds = training_recipe(parse_config({"train": {"loss": "balanced_seed",
                                                    "seed_background": 0}}))
    assert seeds["loss"] == {"loss": "balanced_seed", "seed_background": 0}
    assert weighted != base and seeds != base
