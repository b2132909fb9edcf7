"""Named kill points for the fault-injection suite (``tests/faults``,
``benchmarks/reliability.py``).

The commit paths of the flows call :func:`kill_point` with a name at each step whose
interruption matters (between a batch's images and its manifest part, between ``dvc add``,
``git commit``, ``git tag`` and ``dvc push``, ...). With ``SEGLOOP_KILL_AT=<name>`` (or
``<name>:<n>``, the n-th time that point is reached, from 1) in the environment, the process
kills its whole process group with SIGKILL there, as an out-of-memory killer or a cancelled
worker would: no cleanup handler, ``finally`` or ``atexit`` runs. Unset, a kill point costs
one global lookup.

:data:`POINTS` lists every name, so the suite can check it covers them all.
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "SEGLOOP_KILL_AT"

#: Every kill point in the code, by flow step (the suite checks each is reached).
POINTS: dict[str, str] = {
    "synth.batch.images": "a batch's PNGs are written, its manifest part is not",
    "synth.batch.part": "a batch's manifest part is written (the batch is committed)",
    "synth.compact.tables": "compaction wrote manifest.parquet, the parts still exist",
    "embed.shard.partial": "an image's rows are in a shard's temporary file",
    "embed.shard.written": "a shard's Parquet files are renamed into place",
    "version.added": "`dvc add` ran, nothing is committed",
    "version.committed": "the .dvc file is committed, nothing is pushed or tagged",
    "version.pushed": "the data is pushed, the tag is not made",
    "round.staged": "a round's folder is complete under its temporary name",
    "round.renamed": "a round's folder has its final name, `dvc add` has not run",
    "round.committed": "a round is committed, pushed and tagged, its metrics not recorded",
    "metrics.recorded": "a round's metrics record is committed",
    "checkpoint.written": "a checkpoint's temporary file is written, not renamed",
    "al.trained": "a round's model is trained and saved, not evaluated",
    "al.selected": "the next round is selected, its labels are not committed",
    "pseudo.chunk": "a chunk of pseudo-labels is staged",
    "smoke.dataset": "the smoke dataset folder is written, not versioned",
}

_target: tuple[str, int] | None = None
_seen: dict[str, int] = {}
_loaded = False


def _load() -> None:
    global _target, _loaded
    raw = os.environ.get(ENV, "").strip()
    _loaded = True
    if not raw:
        return
    name, _, count = raw.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}={raw!r}: no kill point {name!r}; known: {', '.join(POINTS)}")
    _target = (name, int(count) if count else 1)


def kill_point(name: str) -> None:
    """SIGKILL this process group here if ``$SEGLOOP_KILL_AT`` names this point (and this
    is its n-th visit)."""
    if not _loaded:
        _load()
    if _target is None or _target[0] != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] != _target[1]:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:  # not a group leader's group (e.g. an interactive shell): this process only
        os.kill(os.getpid(), signal.SIGKILL)
