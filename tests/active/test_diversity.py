"""Diversity primitives on hand-checkable features: k-means, TypiClust, k-means++, dedup."""

from __future__ import annotations

import pytest
import torch

from segloop.active.diversity import (
    coverage_clusters,
    kmeans,
    kmeans_pp,
    near_duplicates,
    proportional_quota,
    round_robin,
    typicality,
    typiclust,
)
from segloop.active.features import gradient_embedding, normalise, thumbnails


def blobs(n_per: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three tight, far-apart blobs in 4-D: (3 n, 4) points and their blob ids."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[10.0, 0, 0, 0], [0, 10.0, 0, 0], [0, 0, 10.0, 0]])
    x = centres.repeat_interleave(n_per, 0) + 0.1 * torch.randn(3 * n_per, 4, generator=g)
    return x, torch.arange(3).repeat_interleave(n_per)


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    return all(len(set(a[b == k].tolist())) == 1 for k in b.unique()) and \
        len(set(a.tolist())) == len(set(b.tolist()))


def test_kmeans_finds_the_blobs_and_is_seeded() -> None:
    x, truth = blobs()
    got = kmeans(x, 3, torch.Generator().manual_seed(1))
    assert got.dtype == torch.int64 and same_partition(got, truth)
    again = kmeans(x, 3, torch.Generator().manual_seed(1))
    assert torch.equal(got, again)
    # more clusters than distinct points: only as many as there are
    dup = torch.zeros(5, 2)
    assert kmeans(dup, 3, torch.Generator().manual_seed(0)).unique().numel() == 1


def test_kmeans_pp_never_repeats_a_duplicate() -> None:
    x = torch.tensor([[0.0, 0.0]] * 4 + [[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)
    picks = kmeans_pp(x, 5, torch.Generator().manual_seed(0), first=0)
    # three distinct rows: it stops after three, one of each
    assert len(picks) == 3 and {tuple(x[i].tolist()) for i in picks} == {
        (0.0, 0.0), (1.0, 0.0), (0.0, 1.0)}


def test_typicality_prefers_the_dense_centre() -> None:
    x = torch.tensor([[0.0], [0.1], [-0.1], [0.2], [-0.2], [3.0]])
    t = typicality(x, neighbours=2)
    assert int(t.argmax()) == 0 and int(t.argmin()) == 5


def test_typiclust_takes_the_most_typical_of_each_uncovered_cluster() -> None:
    x, truth = blobs(n_per=6)
    labelled = torch.zeros(len(x), dtype=torch.bool)
    labelled[0] = True  # blob 0 is covered
    picks, clusters, typ = typiclust(x, labelled, 2, torch.Generator().manual_seed(0),
                                     neighbours=3)
    assert len(picks) == 2 and {int(truth[i]) for i in picks} == {1, 2}
    for i in picks:  # the most typical member of its cluster
        members = (clusters == clusters[i]) & ~labelled
        assert typ[i] == typ[members].max()


def test_round_robin_visits_small_clusters_first() -> None:
    clusters = torch.tensor([0, 0, 0, 1, 2, 2])
    # candidates best first: 0, 1, 2 (cluster 0), 3 (cluster 1), 4, 5 (cluster 2)
    assert round_robin([0, 1, 2, 3, 4, 5], clusters) == [3, 4, 0, 5, 1, 2]


def test_round_robin_follows_a_given_turn() -> None:
    clusters = torch.tensor([0, 0, 0, 1, 2, 2])
    assert round_robin([0, 1, 2, 3, 4, 5], clusters, turn=[0, 2]) == [0, 4, 3, 1, 5, 2]


def test_coverage_clusters_visit_uncovered_then_large_clusters() -> None:
    x, truth = blobs(n_per=6)
    x = torch.cat([x, x[truth == 2][:3]])  # blob 2 gets 3 more members (9)
    truth = torch.cat([truth, torch.full((3,), 2)])
    labelled = torch.zeros(len(x), dtype=torch.bool)
    labelled[0] = True  # blob 0 covered
    clusters, turn = coverage_clusters(x, labelled, 2, torch.Generator().manual_seed(0))
    assert len(turn) == 3
    blob_of = {int(clusters[i]): int(truth[i]) for i in range(len(x))}
    assert [blob_of[c] for c in turn] == [2, 1, 0]


def test_near_duplicates_against_labelled_and_earlier_picks() -> None:
    x = normalise(torch.tensor([[1.0, 0, 0], [1.0, 0.01, 0], [0, 1.0, 0], [0, 0, 1.0],
                                [0, 0.01, 1.0], [0.2, 0.3, 0.1]]))
    dropped = near_duplicates(x, [1, 2, 3, 4], torch.tensor([0]), 0.99)
    assert dropped == {1, 4}  # 1 copies labelled 0; 4 copies the earlier pick 3


def test_thumbnails_and_gradient_embedding_shapes() -> None:
    images = torch.randint(0, 256, (3, 3, 24, 32), dtype=torch.uint8)
    t = thumbnails(images, batch_size=2)
    assert t.shape == (3, 3 * 12 * 16)
    torch.testing.assert_close(t.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    probs = torch.softmax(torch.randn(2, 4, 8, 8), 1)
    feats = torch.randn(2, 5, 4, 4)
    g = gradient_embedding(probs, feats)
    assert g.shape == (2, 20)
    # a confident prediction (one-hot) has a zero gradient embedding
    sure = torch.zeros(1, 4, 8, 8)
    sure[:, 2] = 1.0
    assert torch.count_nonzero(gradient_embedding(sure, feats[:1])) == 0


def test_proportional_quota_fills_the_largest_deficits() -> None:
    clusters = torch.tensor([0] * 6 + [1] * 3 + [2] * 3)
    none = torch.zeros(12, dtype=torch.bool)
    assert proportional_quota(clusters, none, 4) == [2, 1, 1]  # targets 2, 1, 1
    two_in_0 = none.clone()
    two_in_0[:2] = True
    assert proportional_quota(clusters, two_in_0, 2) == [0, 1, 1]  # targets 2, 1, 1
    # a tie on deficit and size goes to the smaller id; never more than a cluster's free rows
    assert proportional_quota(torch.tensor([0] * 5 + [1] * 5), torch.zeros(10, dtype=bool),
                              1) == [1, 0]
    full = torch.tensor([True] * 5 + [False] * 6 + [True])
    assert proportional_quota(clusters, full, 10) == [1, 3, 2]  # only 1 + 3 + 2 rows are free


def test_blocked_distances_equal_the_whole_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    """k-means assignment and typicality in row blocks (memory rows x K, not N x K) give
    what one block gives."""
    from segloop.active import diversity

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(300, 16, generator=g), dim=1)
    whole = diversity.typicality(x)
    assert torch.equal(diversity.nearest_centre(x, x[:10], rows=37),
                       diversity._sq_dists(x, x[:10]).argmin(1))
    monkeypatch.setattr(diversity, "ASSIGN_ROWS", 64)
    blocked = diversity.typicality(x)
    assert torch.allclose(whole, blocked, rtol=1e-5, atol=1e-6)
    assert blocked.shape == (300,) and bool((blocked > 0).all())
