"""The whole config: one section per key."""

from __future__ import annotations

from typing import Any

from segloop.config.active import ActiveConfig, TrainConfig
from segloop.config.base import BaseConfig
from segloop.config.data import DataConfig, SmokeConfig
from segloop.config.embed import EmbedConfig
from segloop.config.models import ModelsConfig
from segloop.config.pseudolabel import PseudolabelConfig
from segloop.config.runner import RunnerConfig
from segloop.config.section import Section
from segloop.config.synth import SynthConfig
from segloop.config.tracking import TrackingConfig


class Config(Section):
    base: BaseConfig = BaseConfig()
    data: DataConfig = DataConfig()
    models: ModelsConfig = ModelsConfig()
    smoke: SmokeConfig = SmokeConfig()
    synth: SynthConfig = SynthConfig()
    embed: EmbedConfig = EmbedConfig()
    pseudolabel: PseudolabelConfig = PseudolabelConfig()
    active: ActiveConfig = ActiveConfig()
    train: TrainConfig = TrainConfig()
    runner: RunnerConfig = RunnerConfig()
    tracking: TrackingConfig = TrackingConfig()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples), ready for YAML."""
        return self.model_dump(mode="json")
