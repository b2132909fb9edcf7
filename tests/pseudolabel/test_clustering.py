"""Greedy low-first clustering (Kim 2022, ch. 3.3.1) on hand-checkable 2-D unit vectors.

With 2-D unit vectors at angles t_p, A[p, q] = cos(t_p - t_q): B[p, q] = 1 iff the angle
gap is under 90 degrees, and q joins seed p at tau = 0.3 iff the gap is under ~72.5.
"""

from __future__ import annotations

import numpy as np
import pytest

from segloop.errors import DataError
from segloop.pseudolabel.clustering import cluster_feature_map, greedy_clusters


def _unit(degrees: list[float]) -> np.ndarray:
    a = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_degree_updates_after_each_removal() -> None:
    # angles 0, 10, 60, 120, 200. cos of the gaps: 0-10 .98, 0-60 .50, 10-60 .64, 60-120
    # .50, 120-200 .17; every other pair is negative.
    # degrees (B row sums, self included): p0 {0,1,2}=3, p1 3, p2 {0,1,2,3}=4, p3 {2,3,4}=3,
    # p4 {3,4}=2.
    # 1) seed p4 (degree 2): A[4, 3] = .17 <= .3, so cluster 0 = {4}; p3's degree -> 2.
    # 2) degrees p0 3, p1 3, p2 4, p3 2: seed p3, A[3, 2] = .5 > .3 -> cluster 1 = {2, 3}.
    # 3) p0, p1 left (degree 2 each): seed p0 -> cluster 2 = {0, 1}.
    # (Stale initial degrees would seed p0 at step 2 and give [1, 1, 1, 2, 0].)
    ids = greedy_clusters(_unit([0, 10, 60, 120, 200]), tau=0.3)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, [2, 2, 1, 1, 0])


def test_low_first_differs_from_high_first() -> None:
    # angles 0, 50, 100, 150: cos 50 = .64 (> tau), cos 100 = -.17, cos 150 = -.87.
    # degrees: p0 {0,1}=2, p1 {0,1,2}=3, p2 {1,2,3}=3, p3 {2,3}=2.
    # low-first: seed p0 (tie with p3, lower index) -> {0, 1}; then seed p2 -> {2, 3}.
    # high-first would seed p1 -> {0, 1, 2}, then {3}: a different partition.
    ids = greedy_clusters(_unit([0, 50, 100, 150]), tau=0.3)
    np.testing.assert_array_equal(ids, [0, 0, 1, 1])


def test_degree_tie_goes_to_lowest_index() -> None:
    # angles 0, 50, 100: degrees 2, 3, 2. Seed p0 -> {0, 1}, then {2}.
    # (The highest tied index, p2, would give {1, 2} then {0}: [1, 0, 0].)
    np.testing.assert_array_equal(greedy_clusters(_unit([0, 50, 100])), [0, 0, 1])


def test_tau_is_strict_and_scale_free() -> None:
    # cos 60 deg = 0.5: tau = 0.49 groups the pair, tau = 0.51 does not. Row
    # scale does not matter (rows are normalised).
    f = _unit([0, 60]) * np.array([[3.0], [0.2]])
    np.testing.assert_array_equal(greedy_clusters(f, tau=0.49), [0, 0])
    np.testing.assert_array_equal(greedy_clusters(f, tau=0.51), [0, 1])
    # tau >= 1: every point alone, in index order (all degrees equal)
    np.testing.assert_array_equal(greedy_clusters(f, tau=1.0), [0, 1])


def _naive(f: np.ndarray, tau: float) -> np.ndarray:
    """Reference: recompute every degree from scratch at each step."""
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    a = unit @ unit.T
    remaining = np.ones(len(f), bool)
    ids = np.full(len(f), -1)
    k = 0
    while remaining.any():
        degree = ((a > 0) & remaining[None, :]).sum(axis=1)
        seed = int(np.argmin(np.where(remaining, degree, len(f) + 1)))
        members = remaining & (a[seed] > tau)
        members[seed] = True
        ids[members] = k
        remaining &= ~members
        k += 1
    return ids


def test_every_point_gets_exactly_one_id_and_matches_reference() -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(size=(60, 8))
    ids = greedy_clusters(f, tau=0.3)
    assert ids.shape == (60,) and (ids >= 0).all()
    k = int(ids.max()) + 1
    assert k > 2
    np.testing.assert_array_equal(np.unique(ids), np.arange(k))
    np.testing.assert_array_equal(ids, _naive(f, 0.3))
    # each cluster has a member (its seed) with cosine > tau to every other member
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    for j in range(k):
        members = unit[ids == j]
        close = (members @ members.T > 0.3) | np.eye(len(members), dtype=bool)
        assert close.all(axis=1).any()


def test_max_points_and_bad_rows() -> None:
    with pytest.raises(DataError, match="pool the features"):
        greedy_clusters(np.ones((5, 2)), max_points=4)
    with pytest.raises(DataError, match="zero norm"):
        greedy_clusters(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(DataError, match="not finite"):
        greedy_clusters(np.array([[1.0, np.nan]]))
    assert greedy_clusters(np.zeros((0, 3))).shape == (0,)


def test_cluster_feature_map_upsamples_by_pixel_centres() -> None:
    # 2 x 2 patches at angles [[0, 10], [120, 130]] -> clusters [[0, 0], [1, 1]]
    # (degrees all 2; seed p0 takes p1; then p2 takes p3).
    f = _unit([0, 10, 120, 130]).T.reshape(2, 2, 2)
    small = cluster_feature_map(f, tau=0.3)
    np.testing.assert_array_equal(small, [[0, 0], [1, 1]])
    big = cluster_feature_map(f, tau=0.3, out_hw=(4, 3))
    assert big.dtype == np.int32 and big.shape == (4, 3)
    # rows 0, 1 read patch row 0 and rows 2, 3 patch row 1 (floor((y + .5) * 2 / 4))
    np.testing.assert_array_equal(big, [[0, 0, 0], [0, 0, 0], [1, 1, 1], [1, 1, 1]])


def test_cluster_feature_map_shrinking_keeps_ids_consecutive() -> None:
    # angles [[0, 120], [240, 0]]: every gap of 120 deg has cos -.5; p0 and p3 coincide.
    # degrees: p0 {0,3}=2, p1 {1}=1, p2 {2}=1, p3 {0,3}=2. Seeds: p1 -> id 0, p2 -> id 1,
    # p0 -> {0, 3} id 2. Map [[2, 0], [1, 2]]; a 1 x 1 output samples patch (1, 1) -> id 2 -> 0.
    f = _unit([0, 120, 240, 0]).T.reshape(2, 2, 2)
    np.testing.assert_array_equal(cluster_feature_map(f, tau=0.3), [[2, 0], [1, 2]])
    np.testing.assert_array_equal(cluster_feature_map(f, tau=0.3, out_hw=(1, 1)), [[0]])
    # 1 x 2 output samples patches (1, 0) and (1, 1): ids 1, 2 -> 0, 1
    np.testing.assert_array_equal(cluster_feature_map(f, tau=0.3, out_hw=(1, 2)), [[0, 1]])
