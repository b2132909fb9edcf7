"""One extractor shared by shards embedding in parallel threads (the thread runner with
``embed.concurrent_shards`` > 1): each image gets its own tokens, as when run alone."""

from __future__ import annotations

import threading

import numpy as np

from segloop.embed.extract import MaskEmbedder
from segloop.models import LoadedSam


def test_threads_sharing_one_extractor_get_their_own_tokens(tiny_sam: LoadedSam,
                                                            images: list[np.ndarray]) -> None:
    embedder = MaskEmbedder(tiny_sam, points_per_side=6, points_per_batch=9)
    alone = [embedder([image])[0] for image in images]
    barrier = threading.Barrier(len(images))
    got: dict[int, list] = {}

    def run(i: int) -> None:
        barrier.wait()
        got[i] = [embedder([images[i]])[0] for _ in range(3)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, ref in enumerate(alone):
        for res in got[i]:
            np.testing.assert_array_equal(res.tokens, ref.tokens)
            np.testing.assert_array_equal(res.iou, ref.iou)
