"""The smoke pipeline, as library steps: N real images -> a versioned dataset -> label round 0.

It exercises every foundation piece end to end (config, data layer, Parquet store,
versioning) on real data, and is what ``make demo`` runs until the active-learning loop
lands. Each function is one step; the Prefect flow in ``flows/smoke.py`` calls them in order.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm.auto import tqdm

from segloop.config import Config
from segloop.data.datasets import open_dataset
from segloop.data.fs import read_bytes
from segloop.data.images import write_bytes_atomic
from segloop.data.parquet import read_table, write_table
from segloop.data.schemas import LABEL_ROUND, MANIFEST, MANIFEST_FILE
from segloop.errors import ConfigError
from segloop.faults import kill_point
from segloop.versioning import RoundInfo, Workspace, commit_round, lineage, version_path


@dataclass(frozen=True)
class SmokeResult:
    """What a smoke run produced (all paths absolute)."""

    dataset_dir: str
    n_images: int
    round_number: int
    round_path: str
    round_tag: str
    round_created: bool
    labelled_images: int
    labelled_pixels: int
    workspace: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def dataset_dir(cfg: Config, ws: Workspace) -> Path:
    """Folder of the smoke dataset snapshot inside the workspace (the run deletes stale
    files under it, so a value that leaves the workspace is refused)."""
    rel = cfg.smoke.dataset_dir.format(name=cfg.data.name)
    dest = (ws.root / rel).resolve()
    if dest == ws.root or not dest.is_relative_to(ws.root):
        raise ConfigError(f"smoke.dataset_dir {cfg.smoke.dataset_dir!r} resolves to {dest}, "
                          f"which is not a folder inside the workspace {ws.root}; the run "
                          "deletes files there. Use a relative path such as "
                          "data/datasets/{name}")
    return dest


def build_dataset(cfg: Config, root: str, dest: Path) -> int:
    """Copy ``smoke.n_images`` validated images (+ labels) to ``dest`` with a manifest.

    Images are a seeded sample of the split, copied byte for byte to
    ``dest/images/<name>`` and labels to ``dest/labels/<name>``; ``dest/manifest.parquet``
    (table ``manifest``) lists them with paths relative to ``dest``. Returns the image count.
    """
    ds = open_dataset(cfg.data.format, root, cfg.data.split, cfg.data.classes,
                      storage_options=cfg.data.storage_options,
                      manifest_external=cfg.data.manifest_external)
    samples = list(ds.samples())
    rng = random.Random(cfg.base.seed)
    chosen = sorted(rng.sample(samples, min(cfg.smoke.n_images, len(samples))),
                    key=lambda s: s.name)
    for sub in ("images", "labels"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        keep = {Path(s.image_url if sub == "images" else (s.label_url or "")).name
                for s in chosen}
        for stale in (dest / sub).iterdir():  # a smaller n_images than last run
            if stale.name not in keep:
                stale.unlink()
    rows = []
    for sample in tqdm(chosen, desc="smoke: reading images", unit="img"):
        loaded = ds.load(sample)  # validates image, label size and label ids
        image_rel = f"images/{Path(sample.image_url).name}"
        _write_if_changed(dest / image_rel, read_bytes(sample.image_url,
                                                       **cfg.data.storage_options))
        label_rel = None
        if sample.label_url is not None:
            label_rel = f"labels/{Path(sample.label_url).name}"
            _write_if_changed(dest / label_rel, read_bytes(sample.label_url,
                                                           **cfg.data.storage_options))
        h, w = loaded.image.shape[:2]
        rows.append({
            "image_id": loaded.image_id, "name": sample.name, "split": cfg.data.split,
            "source": "real", "image_uri": image_rel, "label_uri": label_rel,
            "height": h, "width": w, "n_bytes": (dest / image_rel).stat().st_size,
        })
    write_table(str(dest / MANIFEST_FILE), MANIFEST, rows)
    kill_point("smoke.dataset")
    return len(rows)


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write ``data`` unless the file already holds exactly it (keeps DVC hashes stable)."""
    if path.is_file() and path.read_bytes() == data:
        return
    write_bytes_atomic(str(path), data)


def version_dataset(cfg: Config, ws: Workspace, dest: Path, n_images: int, source: str) -> str:
    """``dvc add`` + git commit + push the dataset folder (its lineage: copied from
    ``source``); returns the commit sha."""
    rel = dest.relative_to(ws.root).as_posix()
    record = lineage.make_record("dataset", cfg, [lineage.data_parent(ws.root, source,
                                                                      "source")])
    return version_path(ws, rel, f"dataset: {dest.name} ({n_images} images)", lineage=record)


def write_round0(cfg: Config, ws: Workspace, dest: Path) -> RoundInfo:
    """Label round 0: the labels of a seeded random ``smoke.label_fraction`` of the dataset.

    The round folder holds ``labels/<image_id>.png`` (uint8 id maps, copied from the dataset),
    ``round.parquet`` (table ``label_round``) and ``round.json`` (what produced it).
    Committing round 0 again is a no-op.
    """
    manifest = read_table(str(dest / MANIFEST_FILE), MANIFEST).to_pylist()
    labelled = [r for r in manifest if r["label_uri"]]
    k = max(1, round(cfg.smoke.label_fraction * len(labelled)))
    rng = random.Random(cfg.base.seed + 1)
    chosen = sorted(rng.sample(labelled, min(k, len(labelled))), key=lambda r: r["name"])
    created_at = datetime.now(UTC)

    def write(tmp: Path) -> None:
        (tmp / "labels").mkdir()
        rows = []
        for r in chosen:
            rel = f"labels/{r['image_id']}.png"
            shutil.copyfile(dest / r["label_uri"], tmp / rel)
            pixels = int(r["height"]) * int(r["width"])
            rows.append({
                "round": 0, "image_id": r["image_id"], "name": r["name"], "region_id": -1,
                "label_uri": rel, "labelled_pixels": pixels, "total_pixels": pixels,
                "cost": float(pixels), "strategy": "random", "score": None,
                "annotator": "ground-truth", "created_at": created_at,
            })
        write_table(str(tmp / "round.parquet"), LABEL_ROUND, rows)
        meta = {"round": 0, "strategy": "random", "fraction": cfg.smoke.label_fraction,
                "seed": cfg.base.seed, "dataset": dest.relative_to(ws.root).as_posix(),
                "images": len(rows), "created_at": created_at.isoformat()}
        (tmp / "round.json").write_text(json.dumps(meta, indent=2) + "\n")

    record = lineage.make_record("label round", cfg, [
        lineage.versioned(ws.root, dest.relative_to(ws.root).as_posix(), "dataset")])
    return commit_round(ws, 0, write, message=f"labels: round 000 ({len(chosen)} images, random)",
                        lineage=record)


def summarize(ws: Workspace, dest: Path, n_images: int, info: RoundInfo) -> SmokeResult:
    """Collect what the run produced from the committed round's table."""
    table = read_table(str(info.path / "round.parquet"), LABEL_ROUND,
                       columns=["labelled_pixels"])
    return SmokeResult(
        dataset_dir=str(dest), n_images=n_images, round_number=info.number,
        round_path=str(info.path), round_tag=info.tag, round_created=info.created,
        labelled_images=table.num_rows,
        labelled_pixels=int(sum(table.column("labelled_pixels").to_pylist())),
        workspace=str(ws.root),
    )


def write_report(result: SmokeResult, reports_dir: str | Path) -> Path:
    """Write ``reports/smoke.json`` (the DVC stage's metrics file) atomically."""
    out = Path(reports_dir) / "smoke.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(str(out), (json.dumps(result.to_dict(), indent=2) + "\n").encode())
    return out


def restore_hint(result: SmokeResult, pipeline: str | None) -> str:
    """Human-readable lines telling where the round lives and how to restore it."""
    flag = f" --pipeline {pipeline}" if pipeline else ""
    state = "written and versioned" if result.round_created else "already committed (no-op)"
    return (
        f"Label round {result.round_number:03d} {state}: {result.round_path}\n"
        f"  {result.labelled_images} images, {result.labelled_pixels} labelled pixels, "
        f"git tag {result.round_tag} in workspace {result.workspace}\n"
        f"Restore it with:  segloop rounds checkout {result.round_number}{flag}\n"
        f"List rounds with: segloop rounds list{flag}"
    )
