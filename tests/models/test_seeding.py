"""Seeded random builds are the same in any thread (the flows load models in parallel)."""

from __future__ import annotations

import threading

import torch

from segloop.models.sam import build_sam


def test_tiny_sam_built_in_four_threads_at_once_equals_one_built_alone() -> None:
    alone = build_sam("tiny", seed=3).state_dict()
    barrier = threading.Barrier(4)
    built: list[dict[str, torch.Tensor]] = []

    def build() -> None:
        barrier.wait()
        built.append(build_sam("tiny", seed=3).state_dict())

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 4
    for sd in built:
        assert sd.keys() == alone.keys()
        assert all(torch.equal(sd[k], alone[k]) for k in alone)
    state = torch.random.get_rng_state()
    build_sam("tiny", seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator untouched
