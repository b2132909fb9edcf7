"""The active-learning loop as library steps; ``flows/active_learning.py`` runs them in order.

Round 0 is a random initial set. After rounds 0..k are committed, the model trained on them
is evaluated (its metrics are recorded on round k) and used to score the pool; the
selection is labelled and committed as round k+1. Everything a later step needs is read
back from the committed rounds and checkpoints, so a killed run resumes where it stopped and
never labels, commits or tags anything twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segloop.active.annotator import annotate_units
from segloop.active.choose import Choice, choose
from segloop.active.fit import fit_round, initial_choice, needs_features, select_round
from segloop.active.pool import (
    CachePlan,
    Pool,
    build_pool,
    evaluation_split,
    plan_split_cache,
)
from segloop.active.rounds_io import write_round_folder
from segloop.active.scan_files import load_scan, save_scan
from segloop.active.scoring import merge_scans, scan_range, shard_ranges, write_scores
from segloop.active.seeds import Seeds, load_seeds, resolve_folder, training_labels
from segloop.active.selection import Budget, Selection, Unit
from segloop.active.state import LabelState, load_state
from segloop.config import Config
from segloop.context import open_workspace, resolve_data_root
from segloop.data.classes import ClassSpec
from segloop.devices import pick_device
from segloop.errors import ConfigError
from segloop.faults import kill_point
from segloop.train.arrays import SplitArrays
from segloop.train.checkpoint import load_checkpoint, read_meta, save_checkpoint
from segloop.train.factory import (
    build_from_config,
    model_recipe,
)
from segloop.train.loop import evaluate
from segloop.train.metrics import SegMetrics
from segloop.versioning import (
    ROUND_DIR,
    ROUND_TAG,
    RoundInfo,
    Workspace,
    commit_round,
    ignore_in_workspace,
    lineage,
    list_rounds,
    record_round_metrics,
    version_path,
)

log = logging.getLogger(__name__)
WORK_DIR = "work"  # per-round scratch in the workspace (git-ignored): scores, pending tasks
POOL_CACHE_DIR = "data/pool"  # the pool and evaluation split at working size (DVC-versioned)
MODELS_DIR = "models"


@dataclass(frozen=True)
class ALContext:
    """Everything the loop's steps share: config, workspace, pool, evaluation split, device."""

    cfg: Config
    ws: Workspace
    pool: Pool
    eval: SplitArrays
    device: torch.device
    seeds: Seeds | None = None
    data_root: str | None = None  # where the pool and evaluation split were read from

    @property
    def classes(self) -> ClassSpec:
        return self.cfg.data.classes

    def round_dir(self, n: int) -> Path:
        return self.ws.root / ROUND_DIR.format(n)

    def work_dir(self, n: int) -> Path:
        return self.ws.root / WORK_DIR / f"round_{n:03d}"

    def model_path(self, k: int) -> Path:
        return self.ws.root / MODELS_DIR / f"round_{k:03d}.safetensors"


_CONTEXTS: dict[str, ALContext] = {}  # the last few configs' contexts in this process
_CONTEXTS_LOCK = threading.RLock()
_CONTEXTS_KEPT = 4


def _remember(cfg: Config, ctx: ALContext) -> None:
    with _CONTEXTS_LOCK:
        _CONTEXTS.pop(cfg.model_dump_json(), None)
        _CONTEXTS[cfg.model_dump_json()] = ctx
        while len(_CONTEXTS) > _CONTEXTS_KEPT:
            del _CONTEXTS[next(iter(_CONTEXTS))]


def prepare(cfg: Config, version: bool = True) -> ALContext:
    """Locate the data, open the workspace, load the pool and the evaluation split (building
    their caches on first use; ``version``: DVC-version finished caches)."""
    ac = cfg.active
    root = resolve_data_root(cfg, splits=(ac.pool_split, ac.eval_split))
    ws = open_workspace(cfg)
    ignore_in_workspace(ws, [f"/{WORK_DIR}/"])
    cache = ws.root / POOL_CACHE_DIR
    pool = build_pool(cfg, root, cache)
    if pool.arrays.labels is None and ac.annotator != "human":
        raise ConfigError(f"the pool split {ac.pool_split!r} has no labels: the simulated "
                              "annotator needs ground truth; set active.annotator: human")
    evaluation = evaluation_split(cfg, root, cache)
    if version:
        _version_caches(cfg, ws, root, cache)
    log.info("pool: %d images (%s), evaluation: %d images (%s), at %dx%d", len(pool),
             ac.pool_split, len(evaluation), ac.eval_split, *pool.arrays.hw)
    seeds = None
    if ac.pseudolabels:
        seeds = load_seeds(pool, resolve_folder(ac.pseudolabels, ws.root),
                           cfg.data.classes.num_classes, cfg.data.classes.ignore_index,
                           cache=ws.root / WORK_DIR / "seeds")  # read per image, not held
    ctx = ALContext(cfg, ws, pool, evaluation, pick_device(cfg.base.device), seeds, root)
    _remember(cfg, ctx)  # tasks of this run in this process reuse it (open_context)
    return ctx


def plan_caches(cfg: Config) -> tuple[str, list[CachePlan]]:
    """The data root and the pool's and evaluation split's cache shards still to write
    (each a mapped task of the flow: :func:`segloop.active.pool.write_split_shard`)."""
    ac = cfg.active
    root = resolve_data_root(cfg, splits=(ac.pool_split, ac.eval_split))
    cache = open_workspace(cfg).root / POOL_CACHE_DIR
    return root, [plan_split_cache(cfg, root, ac.pool_split, ac.pool_limit, cache,
                                   ac.level == "region"),
                  plan_split_cache(cfg, root, ac.eval_split, ac.eval_limit, cache)]


def open_context(cfg: Config) -> ALContext:
    """The loop's context in this process (a task on any worker): :func:`prepare` once per
    config and process, without versioning (the flow's own ``prepare`` did that)."""
    with _CONTEXTS_LOCK:
        ctx = _CONTEXTS.get(cfg.model_dump_json())
        return ctx if ctx is not None else prepare(cfg, version=False)


def _version_caches(cfg: Config, ws: Workspace, root: str, cache: Path) -> None:
    """DVC-version each finished split cache (a no-op for one already versioned)."""
    source = lineage.data_parent(ws.root, root, "dataset")
    for folder in sorted(p for p in cache.iterdir() if p.is_dir()):
        if (folder / "complete.json").is_file():
            rel = folder.relative_to(ws.root).as_posix()
            version_path(ws, rel, f"pool cache: {folder.name}",
                         lineage=lineage.make_record("split cache", cfg, [source]))


def committed_rounds(ctx: ALContext) -> list[RoundInfo]:
    return list_rounds(ctx.ws)


def label_state(ctx: ALContext, upto: int) -> LabelState:
    """Labels of rounds 0..upto (read back from their folders)."""
    folders = [ctx.round_dir(n) for n in range(upto + 1)]
    return load_state(ctx.pool, folders, ctx.cfg.active, ctx.classes.ignore_index)


def budget(ctx: ALContext, value: float) -> Budget:
    """A fraction (< 1) of the pool's images (image level) or pixels (region level), or a
    count (>= 1) of images / regions."""
    ac = ctx.cfg.active
    if value >= 1:
        return Budget(units=int(value), click_cost_pixels=ac.click_cost_pixels)
    if ac.level == "image":
        return Budget(units=max(1, round(value * len(ctx.pool))))
    return Budget(pixels=int(value * ctx.pool.total_pixels),
                  click_cost_pixels=ac.click_cost_pixels)


def initial_selection(ctx: ALContext) -> tuple[Selection, Path | None]:
    """Round 0 up to ``active.initial_fraction``: random units, or TypiClust on image
    thumbnails (no model exists yet). Returns the selection and the scores table that says
    why (``work/round_000/scores.parquet``)."""
    ac = ctx.cfg.active
    state = LabelState.empty(ctx.pool, ctx.classes.ignore_index)
    choice = initial_choice(ctx.pool, state, ctx.cfg, budget(ctx, ac.initial_fraction))
    path = ctx.work_dir(0) / "scores.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_scores(path, choice.rows(ctx.pool, 0, ac.initial_strategy))
    return _checked(choice.selection, choice.units, "active.initial_fraction"), path


def _checked(selection: Selection, units: list[Unit], key: str) -> Selection:
    """An empty selection while units remain means the budget cannot buy even one."""
    if units and not selection.units:
        cheapest = min(u.pixels for u in units)
        raise ConfigError(
            f"{key}: the budget ({selection.to_dict()['budget_pixels']} pixels, "
            f"{selection.to_dict()['budget_units']} units) buys no unit; the cheapest costs "
            f"{cheapest} pixels. Raise {key} or use smaller regions "
            "(active.region.n_segments).")
    return selection


def train_after(ctx: ALContext, k: int, state: LabelState,
                progress: bool = True) -> tuple[nn.Module, float]:
    """The model trained on rounds 0..k: loaded from its checkpoint if one exists, else
    trained with seed ``base.seed * 1000 + k`` (afresh, or from round k-1's model with
    ``active.warm_start_steps``), saved (safetensors, with its loss curve in the metadata:
    ``losses``) and versioned with DVC. Returns the
    model and the seconds its training took."""
    tc, ac = ctx.cfg.train, ctx.cfg.active
    c = ctx.classes.num_classes
    model = build_from_config(tc, c)
    path = ctx.model_path(k)
    recipe = {**model_recipe(tc, c), "rounds": k, "seed": _seed(ctx, k),
              **training_recipe(ctx.cfg),
              # the rounds' commits: a retracted and re-imported round retrains the model
              "label_commits": [r.commit for r in committed_rounds(ctx) if r.number <= k]}
    if ctx.seeds is not None:
        recipe["pseudolabels"] = ctx.seeds.recipe()
    if path.is_file() and read_meta(path).get("recipe") == recipe:
        meta = load_checkpoint(model, path)
        log.info("model of rounds 0..%d loaded from %s (trained before)", k, path.name)
        _version_model(ctx, k, path)  # a no-op unless a kill came between save and version
        return model.to(ctx.device), float(meta.get("train_seconds", 0.0))
    init = None
    if ac.warm_start_steps is not None and k > 0:
        init = build_from_config(tc, c)
        load_checkpoint(init, ctx.model_path(k - 1))
    labels = training_labels(state.labels, state.queried, ctx.seeds)
    losses: list[float] = []
    model, seconds = fit_round(ctx.pool, state, labels, ctx.cfg, _seed(ctx, k), ctx.device,
                               init=init, progress=progress,
                               desc=f"training on rounds 0..{k}", losses=losses)
    save_checkpoint(model, path, {"recipe": recipe, "train_seconds": seconds,
                                  "losses": [float(f"{v:.5g}") for v in losses]})
    log.info("model of rounds 0..%d trained in %.1f s (%d steps)", k, seconds, tc.steps)
    kill_point("al.trained")
    _version_model(ctx, k, path)
    return model, seconds


def load_model(ctx: ALContext, k: int) -> nn.Module:
    """The model trained on rounds 0..k, from its checkpoint, on the context's device."""
    model = build_from_config(ctx.cfg.train, ctx.classes.num_classes)
    load_checkpoint(model, ctx.model_path(k))
    return model.to(ctx.device)


def _version_model(ctx: ALContext, k: int, path: Path) -> None:
    warm = ctx.cfg.active.warm_start_steps is not None and k > 0
    record = _lineage(ctx, "model", [
        lineage.versioned(ctx.ws.root, ROUND_DIR.format(k), "labels", ROUND_TAG.format(k)),
        _model_parent(ctx, k - 1, "initialised from") if warm else None])
    version_path(ctx.ws, path.relative_to(ctx.ws.root).as_posix(),
                 f"model: trained on label rounds 0..{k:03d}", lineage=record)


def _lineage(ctx: ALContext, kind: str,
             parents: list[lineage.Parent | None]) -> dict[str, Any]:
    """A lineage record of the loop: ``parents`` plus the pool's data and seed round."""
    root = ctx.ws.root
    data = lineage.data_parent(root, ctx.data_root, "dataset") if ctx.data_root else None
    seeds = (lineage.data_parent(root, str(resolve_folder(ctx.seeds.folder, root)),
                                 "seed round") if ctx.seeds is not None else None)
    return lineage.make_record(kind, ctx.cfg, [*parents, data, seeds])


def _model_parent(ctx: ALContext, k: int, role: str) -> lineage.Parent | None:
    return lineage.versioned(ctx.ws.root, ctx.model_path(k).relative_to(ctx.ws.root).as_posix(),
                             role)


def training_recipe(cfg: Config) -> dict[str, Any]:
    """Everything besides the model and seed that decides a round's training (checkpoints
    trained otherwise are retrained, not reused)."""
    tc, ac = cfg.train, cfg.active
    out: dict[str, Any] = {"steps": tc.steps, "label_sampling": tc.label_sampling,
                           "semi": tc.semi.model_dump(mode="json") if tc.semi.enabled else None,
                           "warm_start_steps": ac.warm_start_steps}
    if ac.level == "region" and ac.region.grow:
        out["grow"] = {"beta": ac.region.grow_beta, "hops": ac.region.grow_hops,
                       "at": list(ac.region.grow_at)}
    # only where they differ from the defaults, so earlier checkpoints keep their keys
    if tc.class_weights != "none":
        out["class_weights"] = (tc.class_weights if isinstance(tc.class_weights, str)
                                else list(tc.class_weights))
    if tc.loss != "ce":
        out["loss"] = {"loss": tc.loss, "seed_background": tc.seed_background}
    return out


def _seed(ctx: ALContext, k: int) -> int:
    return ctx.cfg.base.seed * 1000 + k


def evaluate_model(ctx: ALContext, model: nn.Module) -> SegMetrics:
    assert ctx.eval.labels is not None
    return evaluate(model, ctx.eval.images, ctx.eval.labels, ctx.classes.names,
                    ctx.classes.ignore_index, ctx.device, ctx.cfg.train.eval_batch_size)


def record_metrics(ctx: ALContext, k: int, state: LabelState, metrics: SegMetrics,
                   extra: dict[str, Any]) -> dict[str, Any]:
    """Record (git-tracked JSON) the metrics of the model trained on rounds 0..k on round k."""
    record = {"round": k, "strategy": ctx.cfg.active.strategy, "level": ctx.cfg.active.level,
              **state.summary(ctx.pool), **metrics.to_dict(), **extra,
              **(ctx.seeds.summary() if ctx.seeds is not None else {})}
    record_round_metrics(ctx.ws, k, record)
    return record


def score_and_select(ctx: ALContext, model: nn.Module, state: LabelState, n: int,
                     progress: bool = True) -> tuple[Selection, Path, float]:
    """Score the unlabelled pool with the round's strategy and select round ``n``'s units
    (:func:`segloop.active.choose.choose`).

    Writes the ``scores`` table to ``work/round_NNN/scores.parquet``; returns the selection,
    that path and the seconds scoring plus selection took.
    """
    ac = ctx.cfg.active
    path = ctx.work_dir(n) / "scores.parquet"
    choice, scan, seconds = select_round(model, ctx.pool, state, ctx.cfg,
                                         budget(ctx, ac.budget_per_round), n, ctx.device,
                                         progress)
    return _selected(ctx, n, choice, len(scan.units), 1, seconds), path, seconds


def _selected(ctx: ALContext, n: int, choice: Choice, candidates: int, shards: int,
              seconds: float) -> Selection:
    """Write round ``n``'s scores table, log, and return the checked selection."""
    ac = ctx.cfg.active
    path = ctx.work_dir(n) / "scores.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_scores(path, choice.rows(ctx.pool, n, ac.strategy))
    log.info("round %d: %s scored %d units in %d shard(s) and selected %d in %.2f s", n,
             ac.strategy, candidates, shards, len(choice.selection.units), seconds)
    kill_point("al.selected")
    return _checked(choice.selection, choice.units, "active.budget_per_round")


def scan_shards(ctx: ALContext) -> list[tuple[int, int]]:
    """The pool's image ranges, one per mapped scoring task (``runner.score_shard_images``)."""
    return shard_ranges(len(ctx.pool), ctx.cfg.runner.score_shard_images)


def scan_folder(ctx: ALContext, n: int) -> Path:
    """Where round ``n``'s shard scans go: keyed by the scoring model's checkpoint (a
    retrained model never reuses an older model's scans)."""
    ckpt = ctx.model_path(n - 1)
    st = ckpt.stat()
    key = hashlib.sha256(json.dumps(
        [read_meta(ckpt).get("recipe"), st.st_size, st.st_mtime_ns, ctx.cfg.active.strategy,
         ctx.cfg.active.level, needs_features(ctx.cfg.active)],
        sort_keys=True, default=str).encode()).hexdigest()[:16]
    return ctx.work_dir(n) / "scan" / key


def score_shard(ctx: ALContext, n: int, start: int, stop: int,
                progress: bool = False) -> Path:
    """Scan pool images ``start:stop`` with the model of rounds 0..n-1 (for round ``n``) and
    write the shard's scan (:mod:`segloop.active.scan_files`); a shard already written is
    not scanned again. Returns its path."""
    path = scan_folder(ctx, n) / f"shard_{start:08d}_{stop:08d}.npz"
    if path.is_file():
        return path
    ac = ctx.cfg.active
    state = label_state(ctx, n - 1)
    scan = scan_range(load_model(ctx, n - 1), ctx.pool, state, ac.strategy, ac.level,
                      ctx.device, start, stop, round_number=n, seed=ctx.cfg.base.seed,
                      batch_size=ctx.cfg.train.eval_batch_size, mc_samples=ac.mc_samples,
                      features=needs_features(ac), progress=progress)
    return save_scan(path, scan)


def select_from_shards(ctx: ALContext, state: LabelState, n: int, paths: list[Path],
                       started: float) -> tuple[Selection, Path, float]:
    """Merge the shard scans (pool order) and choose round ``n``'s units, as
    :func:`score_and_select` does in one process; ``started``: ``time.perf_counter()`` when
    scoring began. Returns the selection, the scores table and the seconds since
    ``started``."""
    ac = ctx.cfg.active
    scan = merge_scans([load_scan(p) for p in paths], ctx.pool, state, ac.strategy, ac.level,
                       round_number=n, seed=ctx.cfg.base.seed)
    gen = torch.Generator().manual_seed(ctx.cfg.base.seed * 1_000_003 + n)
    choice = choose(scan, ctx.pool, state, ac, budget(ctx, ac.budget_per_round), gen)
    seconds = time.perf_counter() - started
    selection = _selected(ctx, n, choice, len(scan.units), len(paths), seconds)
    return selection, ctx.work_dir(n) / "scores.parquet", seconds


def simulate_labels(ctx: ALContext, selection: Selection) -> dict[int, np.ndarray]:
    """Labels from ground truth for the selected units: image index -> (H, W) uint8."""
    mode = "exact" if ctx.cfg.active.annotator == "exact" else "dominant"
    return simulated_labels(ctx.pool, selection, mode, ctx.classes.ignore_index)


def simulated_labels(pool: Pool, selection: Selection, mode: str,
                     ignore_index: int) -> dict[int, np.ndarray]:
    """The simulated annotator over a selection: image index -> (H, W) uint8, ignore
    outside the selected units; regions get their ``mode`` answer (exact or dominant)."""
    gt = pool.arrays.labels
    if gt is None:
        raise ConfigError("the simulated annotator needs ground truth in the pool split")
    by_image: dict[int, list[int]] = {}
    for u in selection.units:
        by_image.setdefault(u.image_index, []).append(u.region_id)
    out = {}
    for i, rids in by_image.items():
        region_map = pool.regions[i] if pool.regions is not None else np.zeros(pool.arrays.hw,
                                                                                np.int32)
        out[i] = annotate_units(gt[i].numpy(), region_map, rids, mode, ignore_index)
    return out


def commit_labels(ctx: ALContext, n: int, selection: Selection, labels: dict[int, np.ndarray],
                  strategy: str, annotator: str, scores: Path | None = None,
                  labelled: dict[tuple[int, int], int] | None = None,
                  extra: dict[str, object] | None = None) -> RoundInfo:
    """Write round ``n``'s folder (labels, table, metadata, scores) and version it
    (``labelled`` and ``extra``: see :func:`write_round_folder`)."""
    created = datetime.now(UTC)

    def write(folder: Path) -> None:
        write_round_folder(folder, ctx.pool, n, selection, labels, ctx.cfg, strategy,
                           annotator, created, scores, labelled, extra)

    what = f"{len(selection.units)} {'images' if ctx.cfg.active.level == 'image' else 'regions'}"
    record = _lineage(ctx, "label round", [] if n == 0 else [
        lineage.versioned(ctx.ws.root, ROUND_DIR.format(n - 1), "previous round",
                          ROUND_TAG.format(n - 1)),
        _model_parent(ctx, n - 1, "selected by model")])
    return commit_round(ctx.ws, n, write, message=f"labels: round {n:03d} ({what}, {strategy})",
                        lineage=record)
