"""benchmarks/tracking.py in its --quick mode (a generated dataset), so the script cannot rot:
both runs finish, the JSON holds consistent figures and no machine paths. Marked slow: two
flow runs in child processes (a Prefect server each) plus a FiftyOne export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from segloop.testing import all_strings

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_quick_run_writes_consistent_figures(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    out = tmp_path / "tracking.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "tracking.py"), "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [r["tracking"] for r in result["runs"]] == ["off", "on"]
    assert result["wall_off_seconds"] > 0 and result["wall_on_seconds"] > 0
    assert result["overhead"] == pytest.approx(
        (result["wall_on_seconds"] - result["wall_off_seconds"]) / result["wall_off_seconds"],
        abs=1e-4)
    assert 0 < result["tracking_seconds"] < result["wall_on_seconds"]
    fo = result["fiftyone_export"]
    assert fo is None or (fo["samples"] == 12 and fo["again_changed"] == 0)
    assert out.with_suffix(".png").is_file()
    assert not [s for s in all_strings(result) if str(tmp_path) in s or "/tmp/" in s]
