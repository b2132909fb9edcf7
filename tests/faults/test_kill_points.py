"""Kill a flow with SIGKILL (its process group) at a named point, rerun it, and check the
workspace matches an uninterrupted run: same tags, versioned data and metrics, rows without
duplicates or gaps, clean `dvc status`, a complete remote, no temporary files.

The default suite runs a few quick cases; the random-time sweep over every flow is marked
slow (``pytest -m slow tests/faults``); ``benchmarks/reliability.py`` runs every case of
:data:`segloop.reliability.plan.KILL_CASES`, the sweep, and records the figures."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from segloop.faults import POINTS, kill_point
from segloop.reliability import cases, harness
from segloop.reliability.plan import KILL_CASES, RANDOM_FRACTIONS

QUICK = [("smoke", "version.committed:2"), ("synthesize", "synth.compact.tables"),
         ("active_learning", "al.trained")]


@pytest.fixture(scope="module")
def api_url(prefect_harness: None) -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory, api_url: str
               ) -> dict[str, harness.Snapshot]:
    out = {}
    for flow in sorted({f for f, _ in QUICK}):
        out[flow], _ = harness.reference_run(flow, tmp_path_factory.mktemp(f"ref-{flow}"),
                                             api_url)
    return out


@pytest.mark.parametrize("flow, point", QUICK, ids=[f"{f}@{p}" for f, p in QUICK])
def test_killed_and_rerun_equals_uninterrupted(flow: str, point: str, tmp_path: Path,
                                               api_url: str, references) -> None:  # type: ignore[no-untyped-def]
    result = harness.kill_case(flow, tmp_path, api_url, references[flow], kill_at=point)
    assert result.killed, f"{point} was never reached by {flow}"
    assert result.survived, "\n".join(result.problems)


def test_every_kill_point_has_a_case_and_unknown_names_are_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    covered = {point.partition(":")[0] for _, point in KILL_CASES}
    assert covered == set(POINTS)
    import segloop.faults as faults

    monkeypatch.setenv(faults.ENV, "no.such.point")
    monkeypatch.setattr(faults, "_loaded", False)
    with pytest.raises(ValueError, match="no kill point 'no.such.point'"):
        kill_point("smoke.dataset")
    monkeypatch.setattr(faults, "_loaded", False)
    monkeypatch.setattr(faults, "_target", None)
    monkeypatch.delenv(faults.ENV)
    kill_point("smoke.dataset")  # unset: nothing happens


@pytest.mark.slow
@pytest.mark.parametrize("flow", cases.FLOWS)
def test_killed_at_random_times_and_rerun_equals_uninterrupted(
        flow: str, tmp_path: Path, api_url: str) -> None:
    """SIGKILL at fractions of an uninterrupted run's duration (jittered, seeded): every
    rerun matches the uninterrupted run."""
    rng = random.Random(flow)
    ref, seconds = harness.reference_run(flow, tmp_path / "ref", api_url)
    problems = []
    for k, fraction in enumerate(RANDOM_FRACTIONS):
        after = seconds * fraction * rng.uniform(0.9, 1.1)
        result = harness.kill_case(flow, tmp_path / f"kill{k}", api_url, ref,
                                   kill_after=after)
        if not result.survived:
            problems.append(f"killed after {after:.1f} s: " + "\n".join(result.problems))
    assert not problems, "\n\n".join(problems)
