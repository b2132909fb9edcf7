"""What a pseudolabel run will do: inputs, labels, target images, round number, resume state.

A round is identified by a fingerprint of its settings and of its inputs (the Parquet files
of the embed outputs and the synthetic manifest, by name and size). If the newest committed
round of the method has the same fingerprint, the run has nothing to do; otherwise it works
towards the next round number in a staging folder that survives an interrupted run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from tqdm.auto import tqdm

from segloop.config import Config
from segloop.data.base import Dataset
from segloop.data.fs import join, parquet_fingerprint, url_to_fs
from segloop.data.ids import image_id
from segloop.data.parquet import read_table
from segloop.embed.store import stored_schema
from segloop.errors import ConfigError
from segloop.pseudolabel import store
from segloop.pseudolabel.bags import choose_labels, manifest_labels, mask_files
from segloop.pseudolabel.label_mapping import (
    LabelMapping,
    map_labels,
    maskdiffusion_labels,
    sam_clip_labels,
)
from segloop.versioning import (
    RoundInfo,
    RoundKind,
    Workspace,
    ignore_in_workspace,
    list_rounds,
    seed_rounds,
)

STAGING_DIR = "work/pseudolabels"
#: Methods that read the target images themselves (the data section's dataset) instead of
#: the SAM masks of an embed output.
IMAGE_METHODS = frozenset({"maskdiffusion"})


@dataclass(frozen=True)
class PseudoPaths:
    """Resolved locations (URLs or local paths); ``output_rel`` is workspace-relative."""

    source: str
    manifest: str
    target: str
    output_rel: str
    staging: Path


@dataclass
class PseudoPlan:
    """A run's work: ``chunks`` of target image ids (``done`` ones are staged already)."""

    method: str
    round: int
    fingerprint: str
    settings: dict[str, Any]
    paths: PseudoPaths
    mapping: LabelMapping
    image_ids: list[str]
    names: dict[str, str]
    chunks: list[list[str]]
    done: set[int] = field(default_factory=set)
    existing: RoundInfo | None = None
    resumed: bool = False
    #: True when the method reads the target images (no SAM masks, no mask table rows)
    reads_images: bool = False
    #: a refinement's input round (method, round, tag, path, fingerprint), else None
    refines: dict[str, Any] | None = None

    @property
    def kind(self) -> RoundKind:
        return seed_rounds(self.paths.output_rel, self.method)

    @property
    def workspace_root(self) -> Path:
        """The workspace the plan works in (its staging folder is inside it)."""
        return self.paths.staging.parents[len(Path(STAGING_DIR).parts)]

    @property
    def todo(self) -> list[int]:
        return [k for k in range(len(self.chunks)) if k not in self.done]


def _inside(ws_root: Path, value: str) -> str:
    return value if "://" in value or value.startswith("/") else str(ws_root / value)


def resolve_paths(cfg: Config, ws_root: Path) -> PseudoPaths:
    """Expand ``{synthetic}``, ``{name}``, ``{method}`` and place relative paths in the
    workspace. The output must be inside the workspace (it is versioned there)."""
    p = cfg.pseudolabel
    keys = {"synthetic": cfg.synth.dataset, "name": cfg.data.name, "method": p.method}
    output = p.output.format(**keys)
    if "://" in output or Path(output).is_absolute() or ".." in Path(output).parts:
        raise ConfigError(f"pseudolabel.output {p.output!r} must be a path inside the "
                          "workspace (rounds are versioned there), e.g. "
                          "data/pseudolabels/{method}")
    return PseudoPaths(
        source=_inside(ws_root, p.source.format(**keys)),
        manifest=_inside(ws_root, p.manifest.format(**keys)),
        target=_inside(ws_root, p.target.format(**keys)),
        output_rel=output,
        staging=ws_root / STAGING_DIR / p.method,
    )


def method_labels(cfg: Config, paths: PseudoPaths) -> tuple[str, ...]:
    """The labels the configured method predicts, in its output order."""
    if cfg.pseudolabel.method == "sam_clip":
        return sam_clip_labels(cfg)
    if cfg.pseudolabel.method == "maskdiffusion":
        return maskdiffusion_labels(cfg)
    labels, _ = manifest_labels(paths.manifest)
    return choose_labels(labels, cfg.pseudolabel.classes, paths.manifest)


def dataset_images(dataset: Dataset, limit: int | None, progress: bool = True
                   ) -> tuple[list[str], dict[str, str]]:
    """(image ids sorted by name, id -> name) of the first ``limit`` images of a dataset
    (by name); ids are the content hashes of the image files, so the plan knows a changed
    image. Two files with the same bytes are one image (the first name is kept)."""
    samples = list(dataset.samples())[:limit] if limit else list(dataset.samples())
    names: dict[str, str] = {}
    for s in tqdm(samples, desc="hashing images", unit="img", disable=not progress,
                  leave=False):
        fs, path = url_to_fs(s.image_url, **getattr(dataset, "storage_options", {}))
        names.setdefault(image_id(fs.cat_file(path)), s.name)
    ids = sorted(names, key=lambda i: (names[i], i))
    return ids, names


def target_images(target: str, limit: int | None) -> tuple[list[str], dict[str, str]]:
    """(image ids sorted by name, id -> name) of an embed output, first ``limit`` only."""
    mask_files(target)  # clear error when there is nothing to read
    table = read_table(join(target, "masks"), stored_schema(target),
                       columns=["image_id", "name"], filters=pc.field("point_index") == 0)
    names = dict(zip(table.column("image_id").to_pylist(), table.column("name").to_pylist(),
                     strict=True))
    ids = sorted(names, key=lambda i: (names[i], i))
    return (ids[:limit] if limit else ids), names


def run_settings(cfg: Config, mapping: LabelMapping) -> dict[str, Any]:
    """Every value that decides a round's content (written to its round.json)."""
    p = cfg.pseudolabel
    method_cfg = getattr(p, p.method)
    out: dict[str, Any] = {
        "method": p.method, "conf": p.conf, "nms_iou": p.nms_iou, "limit": p.limit,
        p.method: method_cfg.model_dump(mode="json"), "mapping": mapping.to_dict(),
        "seed": cfg.base.seed,
    }
    if p.method == "sam_clip":
        out["clip"] = cfg.models.clip.model_dump(mode="json")
    if p.method == "maskdiffusion":
        out["diffusion"] = cfg.models.diffusion.model_dump(mode="json")
    if p.method in IMAGE_METHODS:
        out["dataset"] = {"name": cfg.data.name, "format": cfg.data.format,
                          "split": cfg.data.split}
    return out


def fingerprint(settings: dict[str, Any], paths: PseudoPaths, method: str,
                images: dict[str, str] | None = None) -> str:
    """A round's identity: its settings and its inputs (the embed outputs' files by name
    and size; for image methods, the target images' names and content ids)."""
    inputs: dict[str, Any] = (
        {"images": sorted(images.items())} if method in IMAGE_METHODS and images is not None
        else {"target": parquet_fingerprint(paths.target, "masks")})
    if method == "usam":
        inputs["source"] = parquet_fingerprint(paths.source, "masks")
        inputs["manifest"] = parquet_fingerprint(paths.manifest)
    text = json.dumps({"settings": settings, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan(cfg: Config, ws: Workspace, dataset: Dataset | None = None) -> PseudoPlan:
    """Resolve inputs and labels, decide the round, open the staging folder. Image methods
    (:data:`IMAGE_METHODS`) list their targets from ``dataset`` (the data section's)."""
    p = cfg.pseudolabel
    paths = resolve_paths(cfg, ws.root)
    ignore_in_workspace(ws, [f"/{STAGING_DIR.split('/')[0]}/"])  # scratch, never versioned
    labels = method_labels(cfg, paths)
    mapping = map_labels(labels, cfg.data.classes, p.class_map, p.background)
    if p.method in IMAGE_METHODS:
        if dataset is None:
            raise ConfigError(f"pseudolabel.method {p.method} reads the target images: the "
                              "plan needs the data section's dataset")
        ids, names = dataset_images(dataset, p.limit)
    else:
        ids, names = target_images(paths.target, p.limit)
    settings = run_settings(cfg, mapping)
    fp = fingerprint(settings, paths, p.method, names)
    size = p.chunk_size
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    result = PseudoPlan(p.method, 0, fp, settings, paths, mapping, ids, names, chunks,
                        reads_images=p.method in IMAGE_METHODS)
    return settle(ws, result)


def settle(ws: Workspace, result: PseudoPlan) -> PseudoPlan:
    """Number the plan's round: the newest committed round if it has the plan's fingerprint
    (nothing to do), else the next number, with the staging folder opened (resumed when it
    holds work of the same fingerprint)."""
    rounds = list_rounds(ws, result.kind)
    result.round = rounds[-1].number + 1 if rounds else 0
    if rounds and _round_fingerprint(rounds[-1].path) == result.fingerprint:
        result.existing, result.round = rounds[-1], rounds[-1].number
        return result
    staging = result.paths.staging
    result.resumed = store.open_staging(staging, result.fingerprint, result.settings)
    result.done = {k for k in range(len(result.chunks)) if store.chunk_done(staging, k)}
    return result


def _round_fingerprint(folder: Path) -> str | None:
    try:
        return str(store.read_round_meta(folder).get("fingerprint"))
    except Exception:  # noqa: BLE001  (a round folder not checked out: not the same round)
        return None
