from __future__ import annotations

import numpy as np
import pytest

from segloop.models import LoadedSam, load_sam


@pytest.fixture(scope="session")
def tiny_sam() -> LoadedSam:
    """The tiny random SAM (seed 1) through the real loader, on CPU."""
    return load_sam("tiny", device="cpu", seed=1)


@pytest.fixture
def images() -> list[np.ndarray]:
    """Three RGB uint8 images of different sizes (landscape, portrait, odd)."""
    rng = np.random.default_rng(0)
    return [(rng.random(hw + (3,)) * 255).astype(np.uint8)
            for hw in [(45, 60), (70, 40), (33, 51)]]
