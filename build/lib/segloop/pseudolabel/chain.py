"""The U-SAM chain's configs: one pipeline file drives every step.

``synthesize`` writes ``data/synthetic/<synth.dataset>``; the synthetic images are embedded
with the same config except that the data section points at that manifest and the output at
``pseudolabel.source``; the target images are embedded with the data section as written;
``pseudolabel`` then reads both.
"""

from __future__ import annotations

from pathlib import Path

from segloop.config import Config
from segloop.pseudolabel.plan import resolve_paths


def synthetic_embed_config(cfg: Config, ws_root: Path) -> Config:
    """``cfg`` re-pointed at the synthetic dataset (format manifest, all rows) with its
    embed output at ``pseudolabel.source`` and its report under ``<reports>/synthetic``."""
    paths = resolve_paths(cfg, ws_root)
    data = cfg.data.model_copy(update={"name": cfg.synth.dataset, "format": "manifest",
                                       "root": paths.manifest, "split": ""})
    embed = cfg.embed.model_copy(update={"output": paths.source, "source": "synthetic",
                                         "limit": None})
    # its report goes to <reports>/synthetic/embed/, not over the target embedding's
    reports = str(Path(cfg.base.paths.reports) / "synthetic")
    base = cfg.base.model_copy(update={"paths": cfg.base.paths.model_copy(
        update={"reports": reports})})
    return cfg.model_copy(update={"data": data, "embed": embed, "base": base})


def target_embed_config(cfg: Config, ws_root: Path) -> Config:
    """``cfg`` with its embed output at ``pseudolabel.target``."""
    paths = resolve_paths(cfg, ws_root)
    limit = cfg.pseudolabel.limit if cfg.embed.limit is None else cfg.embed.limit
    embed = cfg.embed.model_copy(update={"output": paths.target, "limit": limit})
    return cfg.model_copy(update={"embed": embed})
