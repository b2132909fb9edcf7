"""``active.pool_limit`` / ``eval_limit``: the first N images, or N spread over the split."""

from __future__ import annotations

from segloop.active.pool import limited


def test_first_n_or_evenly_spread() -> None:
    frames = list(range(10))
    assert limited(frames, None, spread=True) == frames
    assert limited(frames, 20, spread=True) == frames
    assert limited(frames, 3, spread=False) == [0, 1, 2]
    assert limited(frames, 3, spread=True) == [0, 3, 6]
    assert limited(frames, 4, spread=True) == [0, 2, 5, 7]
