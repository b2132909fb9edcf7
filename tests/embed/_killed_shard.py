"""Child process for the resume test: writes shard 0, then dies hard inside shard 1.

Usage: python _killed_shard.py CONFIG_JSON DATA_ROOT OUT. ``os._exit`` skips every cleanup
(no abort, no finally), as a SIGKILL or a power cut would.
"""

from __future__ import annotations

import json
import os
import sys

from segloop.config import parse_config
from segloop.embed import steps


def main(raw: str, root: str, out: str) -> None:
    cfg = parse_config(json.loads(raw))
    plan = steps.plan(cfg, steps.open_input(cfg, root), out)
    steps.embed_shard(cfg, out, plan.shards[0], progress=False)
    extractor = steps.embedder(cfg)
    real_decode = extractor.decode
    calls = [0]

    def dying(*args, **kw):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] > 2:
            os._exit(1)
        return real_decode(*args, **kw)

    extractor.decode = dying  # type: ignore[method-assign]
    steps.embed_shard(cfg, out, plan.shards[1], progress=False)


if __name__ == "__main__":
    main(*sys.argv[1:4])
