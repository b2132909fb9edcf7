"""Typed configuration: one pydantic v2 model per section, frozen, unknown keys rejected.

A config file is YAML with the sections below; every key has a default, so a pipeline file
under ``pipelines/`` lists only what differs. ``params.yaml`` at the project root spells every
value out, because DVC tracks it. Relative paths resolve against the current directory (the
project root when run through ``make``, ``segloop`` or ``dvc repro``).

Errors name the file, the key path (``smoke.n_images``) and the problem.
"""

from __future__ import annotations

from segloop.config.active import ActiveConfig, RegionConfig, SemiConfig, TrainConfig
from segloop.config.base import BaseConfig, PathsConfig
from segloop.config.data import DataConfig, SmokeConfig
from segloop.config.embed import EmbedConfig
from segloop.config.files import dump_config, load_config, parse_config
from segloop.config.models import (
    SCHEDULER_NAMES,
    ClipModelConfig,
    DiffusionModelConfig,
    ModelsConfig,
    SamModelConfig,
)
from segloop.config.pseudolabel import (
    ClustersConfig,
    G4SegConfig,
    MaskDiffusionConfig,
    PseudolabelConfig,
    SamClipConfig,
    USamConfig,
)
from segloop.config.root import Config
from segloop.config.runner import RunnerConfig
from segloop.config.section import Section
from segloop.config.synth import SynthClass, SynthConfig
from segloop.config.tracking import TrackingConfig

__all__ = [
    "ActiveConfig",
    "BaseConfig",
    "ClipModelConfig",
    "ClustersConfig",
    "Config",
    "DataConfig",
    "DiffusionModelConfig",
    "EmbedConfig",
    "G4SegConfig",
    "MaskDiffusionConfig",
    "ModelsConfig",
    "PathsConfig",
    "PseudolabelConfig",
    "RunnerConfig",
    "RegionConfig",
    "SCHEDULER_NAMES",
    "SamClipConfig",
    "SamModelConfig",
    "Section",
    "SemiConfig",
    "SmokeConfig",
    "SynthClass",
    "SynthConfig",
    "TrackingConfig",
    "TrainConfig",
    "USamConfig",
    "dump_config",
    "load_config",
    "parse_config",
]
