"""The end of a pseudolabel run: commit the staged round, record metrics, summarise.

The flow (``flows/pseudolabel.py``) runs: plan -> train heads (U-SAM) -> label chunks ->
evaluate -> :func:`commit` -> :func:`summarize`; each step also runs without Prefect.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from segloop.config import Config
from segloop.data.json_io import read_json
from segloop.pseudolabel import store
from segloop.pseudolabel.mask_label import ChunkStats
from segloop.pseudolabel.plan import PseudoPaths, PseudoPlan, resolve_paths
from segloop.runlock import output_lock
from segloop.versioning import (
    RoundInfo,
    Workspace,
    commit_round,
    lineage,
    record_round_metrics,
)


@contextmanager
def hold_outputs(cfg: Config, ws_root: Path, paths: PseudoPaths | None = None
                 ) -> Iterator[None]:
    """Hold the locks of the staging folder (one per method) and of the seed rounds'
    folder (the configured method's, or ``paths``') for a whole run; a second run on
    either is refused (:class:`BusyError`)."""
    paths = paths if paths is not None else resolve_paths(cfg, ws_root)
    with output_lock(paths.staging, "pseudolabel"), \
            output_lock(ws_root / paths.output_rel, "pseudolabel"):
        yield


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pixels_per_label(plan: PseudoPlan) -> dict[str, int]:
    totals = np.zeros(256, np.int64)
    for image_id in plan.image_ids:
        totals += np.bincount(store.read_label(plan.paths.staging, image_id).ravel(),
                              minlength=256)
    return {label: int(totals[int(i)])
            for label, i in zip(plan.mapping.labels, plan.mapping.class_ids, strict=True)}


def round_meta(plan: PseudoPlan, counts: dict[str, Any],
               training: dict[str, Any] | None) -> dict[str, Any]:
    """``round.json``: what the round is, how it was made and from what."""
    model_dir = plan.paths.staging / store.MODEL_DIR
    checkpoints = {p.name: _sha256(p) for p in sorted(model_dir.glob("*.safetensors"))}
    return {
        "round": plan.round, "method": plan.method, "fingerprint": plan.fingerprint,
        "created_at": datetime.now(UTC).isoformat(), "settings": plan.settings,
        "tau": (training or {}).get("tau"), "tau_rule": (training or {}).get("tau_rule"),
        "inputs": {"source": _shown(plan, plan.paths.source) if plan.method == "usam" else None,
                   "manifest": (_shown(plan, plan.paths.manifest) if plan.method == "usam"
                                else None),
                   "target": (None if plan.reads_images
                              else _shown(plan, plan.paths.target)),
                   "dataset": plan.settings.get("dataset"), "round": plan.refines},
        "labels": list(plan.mapping.labels),
        "counts": counts, "checkpoints": checkpoints, "training": training,
    }


def _shown(plan: PseudoPlan, location: str) -> str:
    """An input as the round records it: relative to the workspace when inside it (no
    machine paths in versioned data), else as configured (a URL or an outside path)."""
    root = plan.workspace_root
    if "://" in location:
        return location
    path = Path(location).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else location


def counts(plan: PseudoPlan, table: pa.Table) -> dict[str, Any]:
    """Images, masks and kept masks per label of the round's ``pseudolabel_masks`` rows;
    for image methods (no masks), labelled pixels per label from the staged label maps."""
    if plan.reads_images:
        return {"images": len(plan.image_ids), "masks": 0, "kept": 0,
                "pixels_per_label": _pixels_per_label(plan)}
    rows = table.select(["label", "kept"]).to_pylist()
    per_label: dict[str, int] = {label: 0 for label in plan.mapping.labels}
    for row in rows:
        if row["kept"]:
            per_label[row["label"]] = per_label.get(row["label"], 0) + 1
    return {"images": len(plan.image_ids), "masks": len(rows),
            "kept": sum(per_label.values()), "kept_per_label": per_label}


def commit(cfg: Config, ws: Workspace, plan: PseudoPlan, training: dict[str, Any] | None,
           metrics: dict[str, Any] | None) -> RoundInfo:
    """Write round ``plan.round`` from the staging folder, version it (dvc add, git commit,
    tag ``pseudolabels/<method>/rNNN``, push) and record its metrics (git-tracked)."""
    masks = store.read_masks(plan.paths.staging)
    meta = round_meta(plan, counts(plan, masks), training)
    root = ws.root
    refines = plan.refines
    record = lineage.make_record("seed round", cfg, [
        None if plan.reads_images else lineage.data_parent(root, plan.paths.source,
                                                           "sam embeddings"),
        lineage.data_parent(root, plan.paths.target, "images"),
        lineage.versioned(root, refines["path"], "refines") if refines else None])
    info = commit_round(
        ws, plan.round, lambda folder: store.fill_round(folder, plan.paths.staging, masks,
                                                        meta, metrics),
        message=f"pseudolabels: {plan.method} round {plan.round:03d} "
                f"({len(plan.image_ids)} images)",
        push=cfg.pseudolabel.version, kind=plan.kind, lineage=record)
    _record(ws, plan, meta["counts"], metrics)
    shutil.rmtree(plan.paths.staging, ignore_errors=True)
    return info


def _record(ws: Workspace, plan: PseudoPlan, counts_: dict[str, Any],
            metrics: dict[str, Any] | None) -> None:
    record = {"round": plan.round, "method": plan.method, **counts_,
              **({"metrics": metrics} if metrics else {})}
    record_round_metrics(ws, plan.round, record, kind=plan.kind)  # commits only a change


def confirm(ws: Workspace, plan: PseudoPlan) -> dict[str, Any] | None:
    """For a rerun with nothing to do: the existing round's metrics (from its folder), and
    its git-tracked metrics record written if a run killed after the commit left it out."""
    assert plan.existing is not None
    folder = plan.existing.path
    if not (folder / store.ROUND_FILE).is_file():  # not checked out here: nothing to read
        return plan.existing.metrics.get("metrics") if plan.existing.metrics else None
    meta = store.read_round_meta(folder)
    shutil.rmtree(plan.paths.staging, ignore_errors=True)  # left if killed after the commit
    path = folder / store.METRICS_FILE
    metrics = (read_json(path, "restore the round with `segloop rounds checkout` or `dvc "
                         "checkout`") if path.is_file() else None)
    _record(ws, plan, meta["counts"], metrics)
    return metrics


def summarize(plan: PseudoPlan, stats: list[ChunkStats], info: RoundInfo | None,
              metrics: dict[str, Any] | None, seconds: float) -> dict[str, Any]:
    images = sum(s.images for s in stats)
    return {
        "method": plan.method, "round": plan.round,
        "round_path": str(info.path) if info else None, "tag": info.tag if info else None,
        "up_to_date": plan.existing is not None, "images": len(plan.image_ids),
        "images_labelled": images, "masks_kept": sum(s.kept for s in stats),
        "maps_refined": sum(s.refined for s in stats), "input_round": plan.refines,
        "seconds": round(seconds, 3),
        "images_per_second": round(images / seconds, 4) if seconds > 0 and images else 0.0,
        "metrics": metrics, "chunks": [s.__dict__ for s in stats],
    }


def write_reports(summary: dict[str, Any], reports_dir: str | Path, sub: str = "") -> Path:
    """``reports/pseudolabel/summary.json`` and ``metrics.json`` (the DVC stage's metrics);
    a refinement's go to ``reports/pseudolabel/refined/`` (``sub``)."""
    out = Path(reports_dir) / "pseudolabel" / sub
    store.write_json(out / "summary.json", summary)
    store.write_json(out / store.METRICS_FILE, {"method": summary["method"],
                                                "round": summary["round"],
                                                **(summary.get("metrics") or {})})
    return out / "summary.json"


def markdown(summary: dict[str, Any]) -> str:
    m = summary.get("metrics") or {}
    lines = [f"# Pseudo-labels: {summary['method']} round {summary['round']:03d}", "",
             f"- images: {summary['images']} ({summary['images_labelled']} labelled this run)",
             f"- masks kept: {summary['masks_kept']}",
             f"- version: {summary.get('tag') or 'not versioned'}"]
    if m:
        def pct(v: Any) -> str:
            return "n/a" if v is None else f"{100 * v:.2f}"
        lines += ["", "| metric | value |", "|---|---:|",
                  f"| mIoU, method's classes, covered pixels | "
                  f"{pct(m.get('miou_covered_method_classes'))} |",
                  f"| mIoU, method's classes, all pixels | "
                  f"{pct(m.get('miou_overall_method_classes'))} |",
                  f"| coverage | {pct(m.get('coverage'))} |",
                  f"| mask mAP50 | {pct(m.get('map50'))} |"]
    return "\n".join(lines) + "\n"


def per_class_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per evaluated class for a Prefect table artifact."""
    return [{"class": name, "iou_covered": metrics["iou_covered"].get(name),
             "iou_overall": metrics["iou_overall"].get(name),
             "ap50": metrics.get("ap50", {}).get(name)}
            for name in metrics.get("method_classes", [])]
