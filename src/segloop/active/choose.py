"""From a scan of the pool to a round's selection: class weights, diversity, budget.

Order of operations for the uncertainty strategies (docs: README, "Active learning"):

1. score = uncertainty x class weight (``class_balance: rarity``: w_c = exp(-p_c) with p_c
   the share of pool pixels predicted c, Cai et al. 2021; an image weighs its predicted
   class shares, a region its dominant predicted class);
2. ``diversity: cluster`` (Cluster-Margin, Citovsky et al. 2021): the ``candidates`` x picks
   best units, visited round-robin over k-means clusters of the images' features from the
   smallest cluster up; ``coverage``: every unit, round-robin over TypiClust's clusters,
   uncovered large clusters first; ``stratified``: the same clusters, each given picks in
   proportion to its size (minus what it already has labelled), filled with its best units;
3. near-duplicate suppression (image level): an image too similar to a labelled or
   already-picked one is skipped;
4. the budget: greedy in that order, at most ``region.max_per_image`` regions per image.

BADGE and TypiClust order the candidates themselves (k-means++ on gradient embeddings;
most typical image of each uncovered cluster). Every candidate's row in the round's
``scores`` table records its uncertainty, class weight, final score and cluster.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from segloop.active.acquisition import STRATEGIES
from segloop.active.diversity import (
    coverage_clusters,
    kmeans,
    kmeans_pp,
    near_duplicates,
    proportional_quota,
    round_robin,
    typiclust,
)
from segloop.active.features import normalise
from segloop.active.pool import Pool
from segloop.active.scoring import PoolScan, score_row
from segloop.active.selection import Budget, Selection, Unit, select
from segloop.active.state import LabelState
from segloop.config import ActiveConfig
from segloop.errors import ConfigError


@dataclass(frozen=True)
class Choice:
    """A round's selection and, per candidate unit, why: ``uncertainty`` (raw score),
    ``weight`` (class weight), ``cluster`` (image cluster id or -1), all keyed by
    (image_index, region_id); ``units`` are the candidates with their final scores."""

    selection: Selection
    units: list[Unit]
    uncertainty: dict[tuple[int, int], float]
    weight: dict[tuple[int, int], float]
    cluster: dict[tuple[int, int], int]

    def rows(self, pool: Pool, round_number: int, strategy: str
             ) -> Iterator[dict[str, object]]:
        """Rows of the ``scores`` table, one per candidate unit, made as they are read."""
        for u in self.units:
            key = (u.image_index, u.region_id)
            yield {**score_row(round_number, pool, u, strategy),
                   "uncertainty": self.uncertainty.get(key),
                   "class_weight": self.weight.get(key), "cluster": self.cluster.get(key, -1)}


def rarity_weights(class_fractions: torch.Tensor) -> torch.Tensor:
    """Cai et al.'s w_c = exp(-p_c), p_c = mean predicted share of class c: (N, C) -> (C,)."""
    return torch.exp(-class_fractions.double().mean(0))


def expected_picks(units: list[Unit], budget: Budget) -> int:
    """How many units the budget buys at the candidates' mean cost (>= 1 if any unit)."""
    if not units:
        return 0
    if budget.units is not None:
        return min(budget.units, len(units))
    mean_cost = sum(budget.cost(u) for u in units) / len(units)
    return max(1, min(len(units), int((budget.pixels or 0) / max(mean_cost, 1e-9))))


def choose(scan: PoolScan, pool: Pool, state: LabelState, ac: ActiveConfig, budget: Budget,
           generator: torch.Generator, strategy: str | None = None) -> Choice:
    """Select a round's units from ``scan`` under ``budget`` with ``ac``'s settings
    (``strategy`` overrides ``ac.strategy``, e.g. for round 0)."""
    strategy = strategy or ac.strategy
    kind = STRATEGIES[strategy].kind
    level = ac.level
    units = scan.units
    raw = {(u.image_index, u.region_id): float(u.score) for u in units}
    weight: dict[tuple[int, int], float] = {}
    cluster: dict[tuple[int, int], int] = {}
    cap = ac.region.max_per_image if level == "region" else None
    if kind == "badge" and level != "image":
        raise ConfigError("active.strategy 'badge' selects whole images: use it with "
                          "active.level: image, or another strategy at region level")
    if kind == "random":
        ordered = sorted(units, key=lambda u: (-u.score, u.image_index, u.region_id))
        return _finish(ordered, units, budget, cap, raw, weight, cluster, ac)
    if kind == "badge":
        assert scan.gradients is not None
        idx = [u.image_index for u in units]
        g = scan.gradients[idx].double()
        norms = g.norm(dim=1)
        units = [replace(u, score=float(n)) for u, n in zip(units, norms.tolist(), strict=True)]
        picks = kmeans_pp(g, expected_picks(units, budget), generator,
                          first=int(norms.argmax()) if len(units) else None)
        chosen = set(picks)
        ordered = [units[i] for i in picks] + [u for k, u in enumerate(units)
                                               if k not in chosen]
        return _finish(ordered, units, budget, cap, raw, weight, cluster, ac)
    x = normalise(scan.features) if scan.features is not None else None
    if kind == "typiclust":
        if x is None:
            raise ValueError("TypiClust needs image features: scan the pool with features")
        n = expected_picks(units, budget)
        n_images = n if level == "image" else math.ceil(n / (cap or 1))
        picks, clusters, typ = typiclust(x, torch.from_numpy(state.image_queried()),
                                         n_images, generator)
        rank = {img: r for r, img in enumerate(picks)}
        # regions of one picked image: in their (random) scan order
        first = sorted((u for u in units if u.image_index in rank),
                       key=lambda u: (rank[u.image_index], -u.score, u.region_id))
        units = [replace(u, score=float(typ[u.image_index])) for u in units]
        cluster = {(u.image_index, u.region_id): int(clusters[u.image_index]) for u in units}
        final = {(u.image_index, u.region_id): u for u in units}
        ordered = [final[(u.image_index, u.region_id)] for u in first] + sorted(
            (u for u in units if u.image_index not in rank),
            key=lambda u: (-u.score, u.image_index, u.region_id))
        return _finish(ordered, units, budget, cap, raw, weight, cluster, ac)
    if ac.class_balance == "rarity" and scan.class_fractions is not None:
        w_c = rarity_weights(scan.class_fractions)
        for u in units:
            key = (u.image_index, u.region_id)
            if level == "image":
                weight[key] = float(scan.class_fractions[u.image_index].double() @ w_c)
            else:
                weight[key] = float(w_c[u.pred_class]) if u.pred_class >= 0 else 1.0
        units = [replace(u, score=u.score * weight[(u.image_index, u.region_id)])
                 for u in units]
    ordered = sorted(units, key=lambda u: (-u.score, u.image_index, u.region_id))
    if ac.diversity != "none" and ordered:
        if x is None:
            raise ValueError(f"diversity {ac.diversity!r} needs image features: scan with "
                             "features")
        picks = expected_picks(ordered, budget)
        n_images = picks if level == "image" else math.ceil(picks / (cap or 1))
        turn: list[int] | None = None
        labelled = torch.from_numpy(state.image_queried())
        if ac.diversity == "coverage":  # every candidate, uncovered large clusters first
            clusters, turn = coverage_clusters(x, labelled, n_images, generator)
            top = ordered
        elif ac.diversity == "stratified":  # each cluster's quota of its best candidates
            clusters, _ = coverage_clusters(x, labelled, n_images, generator)
            quota = proportional_quota(clusters, labelled, n_images)
            per_image = max(1, picks // max(1, n_images))
            taken = [0] * len(quota)
            top = []
            for u in ordered:
                c = int(clusters[u.image_index])
                if taken[c] < quota[c] * per_image:
                    taken[c] += 1
                    top.append(u)
            chosen = {(u.image_index, u.region_id) for u in top}
            ordered = top + [u for u in ordered if (u.image_index, u.region_id) not in chosen]
            turn = sorted(range(len(quota)), key=lambda c: (-quota[c], c))
        else:  # cluster: the best candidates x picks, smallest cluster first
            clusters = kmeans(x, max(1, min(n_images, x.shape[0])), generator)
            top = ordered[: max(picks, int(math.ceil(ac.candidates * picks)))]
        cluster = {(u.image_index, u.region_id): int(clusters[u.image_index]) for u in units}
        unit_clusters = torch.tensor([int(clusters[u.image_index]) for u in top])
        order = round_robin(list(range(len(top))), unit_clusters, turn)
        ordered = [top[i] for i in order] + ordered[len(top):]
    return _finish(ordered, units, budget, cap, raw, weight, cluster, ac, x=x,
                   state=state)


def _finish(ordered: list[Unit], units: list[Unit], budget: Budget, cap: int | None,
            raw: dict[tuple[int, int], float], weight: dict[tuple[int, int], float],
            cluster: dict[tuple[int, int], int], ac: ActiveConfig,
            x: torch.Tensor | None = None, state: LabelState | None = None) -> Choice:
    if (x is not None and state is not None and ac.dedup_similarity is not None
            and ac.level == "image"):
        labelled = torch.from_numpy(state.image_queried()).nonzero().flatten()
        # only the part of the order the budget can reach needs checking
        reach = ordered[: 4 * max(1, expected_picks(ordered, budget))]
        dup = near_duplicates(x, [u.image_index for u in reach], labelled,
                              ac.dedup_similarity)
        ordered = ([u for u in reach if u.image_index not in dup] + ordered[len(reach):]
                   + [u for u in reach if u.image_index in dup])
    balanced = ac.class_balance == "round_robin"
    selection = select(ordered, budget, balanced, keep_order=not balanced,
                       max_per_image=cap)
    return Choice(selection, units, raw, weight, cluster)
