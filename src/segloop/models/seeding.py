"""Random weights drawn from a seed, the same in any thread.

torch's CPU generator is one per process: two threads that each seed it and draw weights
(two shards of a flow loading a model at once) interleave their draws and build different
models. Every seeded build goes through :func:`seeded`, which holds one lock for the
draw and leaves the global generator as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_LOCK = threading.RLock()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw inside the block from ``torch.manual_seed(seed)``, one thread at a time; the
    global generator is restored afterwards."""
    with _LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
