"""The kill cases of the reliability script: every kill point of :data:`segloop.faults.POINTS`
in at least one flow, several flows per point where the point is shared, plus a few random
kill times per flow."""

from __future__ import annotations

#: (flow, kill point as ``name`` or ``name:n``): the n-th visit of that point in that flow.
KILL_CASES: tuple[tuple[str, str], ...] = (
    ("smoke", "smoke.dataset"),
    ("smoke", "version.added"),
    ("smoke", "version.committed"),
    ("smoke", "version.pushed"),
    ("smoke", "round.staged"),
    ("smoke", "round.renamed"),
    ("smoke", "version.added:2"),
    ("smoke", "version.committed:2"),
    ("smoke", "round.committed"),
    ("synthesize", "synth.batch.images"),
    ("synthesize", "synth.batch.part"),
    ("synthesize", "synth.batch.images:3"),
    ("synthesize", "synth.batch.part:2"),
    ("synthesize", "synth.compact.tables"),
    ("synthesize", "version.added"),
    ("synthesize", "version.committed"),
    ("synthesize", "version.pushed"),
    ("embed", "embed.shard.partial"),
    ("embed", "embed.shard.partial:6"),
    ("embed", "embed.shard.written"),
    ("embed", "embed.shard.written:2"),
    ("embed", "version.added"),
    ("embed", "version.committed"),
    ("embed", "version.pushed"),
    ("active_learning", "checkpoint.written"),
    ("active_learning", "al.trained"),
    ("active_learning", "al.selected"),
    ("active_learning", "round.staged"),
    ("active_learning", "round.renamed:2"),
    ("active_learning", "round.committed:2"),
    ("active_learning", "metrics.recorded"),
    ("active_learning", "metrics.recorded:2"),
    ("active_learning", "checkpoint.written:3"),
    ("active_learning", "al.selected:2"),
    ("pseudolabel", "pseudo.chunk"),
    ("pseudolabel", "pseudo.chunk:2"),
    ("pseudolabel", "round.staged"),
    ("pseudolabel", "version.committed"),
    ("pseudolabel", "round.committed"),
    ("pseudolabel", "metrics.recorded"),
    ("usam", "synth.batch.part"),
    ("usam", "synth.compact.tables"),
    ("usam", "embed.shard.partial:4"),
    ("usam", "version.committed:2"),
    ("usam", "checkpoint.written"),
    ("usam", "checkpoint.written:2"),
    ("usam", "pseudo.chunk"),
    ("usam", "round.committed"),
)

#: Kill times per flow for the random-time sweep, as fractions of its uninterrupted wall time.
RANDOM_FRACTIONS = (0.35, 0.55, 0.75, 0.9)
