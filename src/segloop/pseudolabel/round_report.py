"""Scoring a staged round against ground truth, and the side-by-side figure.

mIoU is reported over the classes the method can paint (its labels' classes plus the
background class, if any): the target's other classes are not asked for, so they would
only add zeros. Their ground-truth pixels still count: painting them is a false positive.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from segloop.config import Config
from segloop.data import rle
from segloop.data.base import Dataset, Sample
from segloop.embed.store import read_embeddings
from segloop.pseudolabel import store
from segloop.pseudolabel.evaluate import PseudoLabelEvaluator
from segloop.pseudolabel.figures import side_by_side
from segloop.pseudolabel.label_mapping import ABSTAIN
from segloop.pseudolabel.mask_label import load_target
from segloop.pseudolabel.plan import PseudoPlan


def evaluated_classes(plan: PseudoPlan) -> list[int]:
    ids = {int(i) for i in plan.mapping.class_ids}
    if plan.mapping.background is not None:
        ids.add(plan.mapping.background)
    return sorted(ids)


def evaluate_round(cfg: Config, plan: PseudoPlan, dataset: Dataset,
                   progress: bool = True) -> dict[str, Any] | None:
    """Metrics of the staged labels over the target images that have ground truth (None if
    none has), and the side-by-side figure of the first ``pseudolabel.side_by_side``
    images (without a ground-truth panel for images that have none)."""
    p = cfg.pseudolabel
    spec = plan.mapping.spec
    samples: dict[str, Sample] = {s.name: s for s in dataset.samples()}
    staged = store.read_masks(plan.paths.staging)
    kept = staged.filter(staged.column("kept")).to_pylist()
    kept_by_image: dict[str, list[dict[str, Any]]] = {}
    for row in kept:
        kept_by_image.setdefault(row["image_id"], []).append(row)
    names = [c.name for c in sorted(spec.classes, key=lambda c: c.id)]
    bg = plan.mapping.background
    evaluator = PseudoLabelEvaluator(names, spec.ignore_index, abstain=ABSTAIN,
                                     map_iou=p.map_iou, min_object_area=p.min_object_area,
                                     exclude_from_map=[bg] if bg is not None else [])
    figure_rows = []
    scored = 0
    bar = tqdm(total=len(plan.image_ids), desc="evaluating", unit="img", disable=not progress,
               leave=False)
    for chunk in plan.chunks:
        kept_rles = _kept_rles(plan, chunk, kept_by_image)
        for image_id in chunk:
            bar.update()
            sample = samples.get(plan.names[image_id])
            want_figure = len(figure_rows) < p.side_by_side
            if sample is None or (sample.label_url is None and not want_figure):
                continue
            loaded = load_target(dataset, samples, plan.names[image_id], image_id)
            pred = store.read_label(plan.paths.staging, image_id)
            if want_figure:
                figure_rows.append((loaded.image, pred, loaded.label, plan.names[image_id]))
            if loaded.label is None:
                continue
            rows = kept_by_image.get(image_id, [])
            masks = rle.decode_many(kept_rles.get(image_id, []), pred.shape)
            evaluator.update(pred, loaded.label, masks,
                             np.array([r["class_id"] for r in rows], np.int64),
                             np.array([r["confidence"] for r in rows], np.float32))
            scored += 1
    bar.close()
    _figure(plan, figure_rows)
    if not scored:
        return None
    result = evaluator.result().to_dict()
    chosen = [names[i] for i in evaluated_classes(plan)]
    for key in ("covered", "overall"):
        values = [result[f"iou_{key}"].get(n) for n in chosen]
        present = [v for v in values if v is not None]
        result[f"miou_{key}_method_classes"] = float(np.mean(present)) if present else None
    result["method_classes"] = chosen
    return result


def _kept_rles(plan: PseudoPlan, chunk: list[str],
               kept_by_image: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The RLEs of each image's kept masks (in ``kept_by_image`` order), read for the
    whole chunk at once (only the images that kept any mask)."""
    ids = [i for i in chunk if kept_by_image.get(i)]
    if not ids:
        return {}
    emb = read_embeddings(plan.paths.target, ids, tokens=False, masks=True)
    assert emb.rles is not None
    return {image_id: [emb.rles[n][r["point_index"]] for r in kept_by_image[image_id]]
            for n, image_id in enumerate(ids)}


def _figure(plan: PseudoPlan, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    classes = sorted(plan.mapping.spec.classes, key=lambda c: c.id)
    side_by_side(rows, [c.color or (128, 128, 128) for c in classes],
                 str(plan.paths.staging / store.FIGURE_FILE), abstain=ABSTAIN,
                 ignore_index=plan.mapping.spec.ignore_index,
                 class_names=[c.name for c in classes])
