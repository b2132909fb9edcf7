"""Diversity for batch selection: k-means, TypiClust, BADGE's k-means++ and near-duplicate
suppression, on L2-normalised features (N, D) float32 (:mod:`segloop.active.features`).

Everything is seeded by a ``torch.Generator`` and deterministic for the same inputs.
"""

from __future__ import annotations

import torch


def _sq_dists(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(N, D), (K, D) -> (N, K) squared Euclidean distances, >= 0."""
    d = (x * x).sum(1, keepdim=True) - 2 * x @ centres.T + (centres * centres).sum(1)
    return d.clamp_min_(0.0)


ASSIGN_ROWS = 8192  # rows per block of the (rows, K) distance matrix in k-means steps


def nearest_centre(x: torch.Tensor, centres: torch.Tensor,
                   rows: int = ASSIGN_ROWS) -> torch.Tensor:
    """(N, D), (K, D) -> (N,) int64 index of each row's nearest centre, computed in blocks
    of ``rows`` rows so memory stays at rows x K whatever N is."""
    if x.shape[0] <= rows:
        return _sq_dists(x, centres).argmin(1)
    return torch.cat([_sq_dists(x[a : a + rows], centres).argmin(1)
                      for a in range(0, x.shape[0], rows)])


def kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator,
              first: int | None = None) -> list[int]:
    """k-means++ seeding (Arthur and Vassilvitskii 2007): ``k`` distinct row indices.

    The first is ``first`` (BADGE: the largest-norm row) or drawn uniformly; each next is
    drawn with probability proportional to its squared distance to the nearest one picked.
    Stops early when every remaining row coincides with a picked one.
    """
    n = x.shape[0]
    if n == 0 or k <= 0:
        return []
    start = int(torch.randint(0, n, (1,), generator=generator)) if first is None else first
    picked = [start]
    nearest = _sq_dists(x, x[start : start + 1])[:, 0]
    while len(picked) < min(k, n):
        total = float(nearest.sum())
        if total <= 0.0:
            break
        i = int(torch.multinomial(nearest.double() / total, 1, generator=generator))
        picked.append(i)
        nearest = torch.minimum(nearest, _sq_dists(x, x[i : i + 1])[:, 0])
    return picked


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator,
           iterations: int = 25) -> torch.Tensor:
    """Lloyd's k-means from k-means++ seeds: (N,) int64 cluster ids in [0, k').

    k' = min(k, distinct rows); an emptied cluster keeps its old centre.
    """
    n = x.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    seeds = kmeans_pp(x, k, generator)
    centres = x[seeds].clone()
    assign = nearest_centre(x, centres)
    for _ in range(iterations):
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=len(centres)).unsqueeze(1)
        centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
        new = nearest_centre(x, centres)
        if torch.equal(new, assign):
            break
        assign = new
    return assign


def typicality(x: torch.Tensor, neighbours: int = 20) -> torch.Tensor:
    """TypiClust's typicality: 1 / mean distance to the ``neighbours`` nearest other rows.

    (N, D) -> (N,) float32; a single row scores 0."""
    n = x.shape[0]
    if n <= 1:
        return torch.zeros(n)
    k = min(neighbours, n - 1)
    out = torch.empty(n)
    for a in range(0, n, ASSIGN_ROWS):  # (rows, N) distances at a time, not (N, N)
        d = _sq_dists(x[a : a + ASSIGN_ROWS], x).sqrt_()
        rows = torch.arange(d.shape[0])
        d[rows, rows + a] = float("inf")
        out[a : a + d.shape[0]] = 1.0 / d.topk(k, dim=1, largest=False).values.mean(1).clamp_min(
            1e-12)
    return out


def coverage_clusters(x: torch.Tensor, labelled: torch.Tensor, n: int,
                      generator: torch.Generator, max_clusters: int = 500
                      ) -> tuple[torch.Tensor, list[int]]:
    """TypiClust's clustering: all rows into |labelled| + ``n`` k-means clusters, and the
    order to visit them: fewest labelled rows first, then the larger cluster first.

    ``x`` (N, D), ``labelled`` (N,) bool -> cluster ids (N,) int64, cluster visit order.
    """
    k = min(int(labelled.sum()) + n, max_clusters, x.shape[0])
    clusters = kmeans(x, k, generator)
    n_clusters = int(clusters.max()) + 1 if clusters.numel() else 0
    size = torch.bincount(clusters, minlength=n_clusters)
    covered = torch.bincount(clusters[labelled], minlength=n_clusters)
    return clusters, sorted(range(n_clusters), key=lambda c: (int(covered[c]), -int(size[c]), c))


def proportional_quota(clusters: torch.Tensor, labelled: torch.Tensor, n: int) -> list[int]:
    """Picks per cluster so that labelled + picked rows follow the clusters' sizes
    (stratified sampling): cluster c's target is (|labelled| + n) x size_c / N; the ``n``
    picks go to the largest remaining deficits (largest remainder, ties: larger cluster,
    then smaller id), never more than a cluster's unlabelled rows.

    ``clusters`` (N,) int64 ids in [0, K), ``labelled`` (N,) bool -> (K,) quotas summing to
    min(n, unlabelled rows)."""
    k = int(clusters.max()) + 1 if clusters.numel() else 0
    size = torch.bincount(clusters, minlength=k).double()
    covered = torch.bincount(clusters[labelled], minlength=k).double()
    free = (size - covered).long().tolist()
    target = (float(labelled.sum()) + n) * size / max(1, clusters.numel())
    deficit = (target - covered).tolist()
    quota = [0] * k
    for _ in range(min(n, sum(free))):
        open_ = [c for c in range(k) if quota[c] < free[c]]
        c = max(open_, key=lambda c: (deficit[c] - quota[c], size[c], -c))
        quota[c] += 1
    return quota


def typiclust(x: torch.Tensor, labelled: torch.Tensor, n: int, generator: torch.Generator,
              neighbours: int = 20, max_clusters: int = 500) -> tuple[list[int], torch.Tensor,
                                                                       torch.Tensor]:
    """TypiClust (Hacohen et al. 2022): cluster all rows into |labelled| + n clusters; take
    the most typical unlabelled row of the cluster with the fewest labelled rows (ties: the
    larger cluster), ``n`` times, each cluster at most once.

    ``x`` (N, D) features of the whole pool, ``labelled`` (N,) bool. Returns the picked
    indices (in pick order), the cluster ids (N,) and the typicality (N,) of every row
    within its cluster.
    """
    clusters, order = coverage_clusters(x, labelled, n, generator, max_clusters)
    n_clusters = len(order)
    typ = torch.zeros(x.shape[0])
    for c in torch.unique(clusters).tolist():
        members = torch.nonzero(clusters == c).flatten()
        typ[members] = typicality(x[members], neighbours)
    picked: list[int] = []
    used: set[int] = set()
    while len(picked) < n:
        progress = False
        for c in order:
            if len(picked) >= n:
                break
            if c in used and len(used) < n_clusters:
                continue
            free = torch.nonzero((clusters == c) & ~labelled).flatten()
            free = free[~torch.isin(free, torch.tensor(picked, dtype=torch.int64))]
            if free.numel() == 0:
                used.add(c)
                continue
            picked.append(int(free[typ[free].argmax()]))
            used.add(c)
            progress = True
        if not progress:
            break
    return picked, clusters, typ


def round_robin(order: list[int], clusters: torch.Tensor,
                turn: list[int] | None = None) -> list[int]:
    """Cluster-Margin's sampling: visit clusters from the smallest (among ``order``'s
    members) up, or in ``turn``'s order of cluster ids, taking each cluster's next best
    candidate in turn. ``order`` lists candidate indices best first; the result is a
    permutation of it."""
    queues: dict[int, list[int]] = {}
    for i in order:
        queues.setdefault(int(clusters[i]), []).append(i)
    if turn is None:
        turn = sorted(queues, key=lambda c: (len(queues[c]), c))
    else:
        turn = [c for c in turn if c in queues] + sorted(set(queues) - set(turn))
    out: list[int] = []
    depth = 0
    while len(out) < len(order):
        for c in turn:
            if depth < len(queues[c]):
                out.append(queues[c][depth])
        depth += 1
    return out


def near_duplicates(x: torch.Tensor, order: list[int], reference: torch.Tensor,
                    threshold: float) -> set[int]:
    """Rows of ``order`` (best first) whose cosine similarity to an earlier row of
    ``order`` or to any ``reference`` row (e.g. labelled images) exceeds ``threshold``.

    ``x`` (N, D) L2-normalised; ``reference`` (M,) int64 indices into ``x``."""
    dropped: set[int] = set()
    kept: list[int] = reference.tolist()
    for i in order:
        if kept and float((x[kept] @ x[i]).max()) > threshold:
            dropped.add(i)
            continue
        kept.append(i)
    return dropped
