"""What to generate: one job per image, each with its prompt and a deterministic seed.

Label ``L`` with names ``n_1..n_k`` (k > 1: a superclass) and templates ``t_1..t_m`` gets
``images_per_class`` jobs; job ``i`` prompts the ``(i mod k*m)``-th (name, template) pair,
names outer, so every name and template is used in turn. Its seed is derived from
(global seed, label, name, template, i) by SHA-256, so a job's image depends on nothing
else: reruns reproduce it, resumes can skip it, and adding a class changes no other image.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from segloop.config import SynthConfig
from segloop.errors import ConfigError


@dataclass(frozen=True)
class Job:
    """One image to generate."""

    label: str
    label_dir: str
    class_index: int
    name: str
    template: str
    index: int
    prompt: str
    negative_prompt: str
    seed: int


def label_dir(label: str) -> str:
    """Folder name of a label: spaces and anything unusual become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label.strip())


def job_seed(global_seed: int, label: str, name: str, template: str, index: int) -> int:
    """A 63-bit seed from the job's identity (stable across runs, machines and versions)."""
    key = "\x1f".join([str(global_seed), label, name, template, str(index)]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


def check_classes(cfg: SynthConfig) -> None:
    """Refuse configs with nothing to generate or labels that collide on disk."""
    if not cfg.classes:
        raise ConfigError("synth.classes is empty: name the classes to generate, e.g. "
                          "classes: [forklift, pallet, person] (or {label, names} entries "
                          "for a superclass)")
    seen: dict[str, str] = {}
    for c in cfg.classes:
        folder = label_dir(c.label)
        if folder in seen:
            raise ConfigError(f"synth.classes: labels {seen[folder]!r} and {c.label!r} share "
                              f"the folder {folder!r}; give them distinct names")
        seen[folder] = c.label


def jobs_for(cfg: SynthConfig, class_index: int, global_seed: int) -> list[Job]:
    """All ``images_per_class`` jobs of the label at ``class_index``, in index order."""
    c = cfg.classes[class_index]
    pairs = [(name, template) for name in c.names for template in cfg.templates]
    jobs = []
    for i in range(cfg.images_per_class):
        name, template = pairs[i % len(pairs)]
        jobs.append(Job(
            label=c.label, label_dir=label_dir(c.label), class_index=class_index, name=name,
            template=template, index=i, prompt=template.format(c=name),
            negative_prompt=cfg.negative_prompt,
            seed=job_seed(global_seed, c.label, name, template, i)))
    return jobs


def label_texts(cfg: SynthConfig) -> list[str]:
    """One CLIP text per label, for the filter: the first template with the label's name."""
    return [cfg.templates[0].format(c=c.label) for c in cfg.classes]
