"""The GPU check (benchmarks/gpu_check.py) without a GPU: the no-CUDA exit writes nothing,
``--dry-run`` runs every part on the CPU with the tiny models and records no error, the
time budget skips parts, and a failing part is recorded (without machine paths) while the
next part still runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from segloop.testing import all_strings

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check as bench  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _no_machine_paths(data: dict[str, Any], *paths: Path) -> None:
    text = "\n".join(all_strings(data))
    for path in (ROOT, Path.home(), *paths):
        assert str(path) not in text, f"{path} leaked into the JSON"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_prints_one_line_and_writes_nothing(tmp_path: Path) -> None:
    default = bench.DEFAULT_OUT
    before = default.stat().st_mtime_ns if default.exists() else None
    out = tmp_path / "gc.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == bench.EXIT_NO_CUDA == 2, proc.stderr
    assert proc.stdout.strip() == bench.NO_CUDA_LINE
    assert "no CUDA device" in proc.stdout and len(proc.stdout.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
    after = default.stat().st_mtime_ns if default.exists() else None
    assert after == before


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, float]:
    """The script with --dry-run once, in a subprocess: its JSON, output path and seconds."""
    out = tmp_path_factory.mktemp("gpu-check") / "gc.json"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)],
                          env=ENV, capture_output=True, text=True, timeout=240)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "gpu_check [" in proc.stdout  # progress lines
    return json.loads(out.read_text()), out, seconds


def test_dry_run_runs_every_part_without_errors(
    dry_run: tuple[dict[str, Any], Path, float]
) -> None:
    data, out, _ = dry_run
    assert data["errors"] == {}
    assert data["skipped"] == []
    assert set(data["parts"]) == set(bench.PART_FUNCS)
    assert data["settings"]["dry_run"] is True
    assert data["settings"]["thresholds_rel_err"] == {"float16": 0.05, "bfloat16": 0.1}
    assert data["device"]["used"] == "cpu"
    assert data["total_seconds"] > 0
    for entry in data["parts"].values():
        assert entry["part_seconds"] > 0
    assert out.with_suffix(".png").stat().st_size > 0
    assert not list(out.parent.glob(".*tmp*"))
    _no_machine_paths(data, out.parent)


def test_dry_run_precision_numbers_are_finite(
    dry_run: tuple[dict[str, Any], Path, float]
) -> None:
    precision = dry_run[0]["parts"]["precision"]
    assert set(precision["models"]) == set(bench.PRECISION_MODELS)
    for name, model in precision["models"].items():
        dtypes = model["dtypes"]
        fp32 = dtypes["float32"]
        assert fp32["finite"] is True and math.isfinite(fp32["seconds_per_forward"])
        assert fp32["seconds_per_forward"] > 0, name
        assert dtypes["float16"] == {"skipped": "fp16 needs CUDA"}  # CPU
        bf16 = dtypes["bfloat16"]
        assert bf16["finite"] is True
        for key in ("rel_err", "max_abs_diff", "seconds_per_forward", "speedup_vs_float32"):
            assert isinstance(bf16[key], float) and math.isfinite(bf16[key]), (name, key)
        assert 0 <= bf16["rel_err"] < 1 and bf16["max_abs_diff"] >= 0
        assert bf16["pass"] is (bf16["rel_err"] < bench.THRESHOLDS["bfloat16"])


def test_dry_run_library_parts_record_their_figures(
    dry_run: tuple[dict[str, Any], Path, float]
) -> None:
    parts = dry_run[0]["parts"]
    sizes = bench.Sizes.tiny()
    embed = parts["embed_shard"]["dtypes"]["float32"]
    assert embed["images"] == sizes.embed_images
    assert embed["masks"] == sizes.embed_images * sizes.embed_points_per_side**2
    assert embed["seconds"] > 0 and embed["peak_memory_gib"] is None  # CPU: no CUDA peak
    synth = parts["synthesize_batch"]
    assert synth["images"] == sizes.synth_batch and synth["seconds"] > 0
    al = parts["al_round"]
    assert 0.0 <= al["miou"] <= 1.0
    assert al["steps"] == sizes.al_steps and al["seconds_per_step"] > 0
    assert al["round0_units"] >= 1 and al["round1_units"] >= 1
    assert al["scoring_seconds"] > 0


def test_budget_used_up_skips_every_part(tmp_path: Path) -> None:
    out = tmp_path / "gc.json"
    assert bench.main(["--dry-run", "--budget-s", "0", "--out", str(out)]) == bench.EXIT_OK
    data = json.loads(out.read_text())
    assert data["parts"] == {} and data["errors"] == {}
    assert [s["part"] for s in data["skipped"]] == list(bench.PART_FUNCS)
    assert all("budget" in s["reason"] for s in data["skipped"])


def test_a_failing_part_is_recorded_and_the_next_one_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Path] = []

    def boom(run: bench.Run) -> dict[str, Any]:
        seen.append(run.tmp)
        raise RuntimeError(f"cannot read {run.tmp / 'weights.pth'}")

    def fine(run: bench.Run) -> dict[str, Any]:
        return {"seconds": 0.5, "peak_memory_gib": None}

    monkeypatch.setitem(bench.PART_FUNCS, "precision", boom)
    monkeypatch.setitem(bench.PART_FUNCS, "embed_shard", fine)
    out = tmp_path / "gc.json"
    code = bench.main(["--dry-run", "--only", "precision", "embed_shard", "--out", str(out)])
    assert code == bench.EXIT_ERRORS
    data = json.loads(out.read_text())
    error = data["errors"]["precision"]
    assert error["error"] == "RuntimeError: cannot read <tmp>/weights.pth"
    assert any(w.startswith("test_gpu_check.py:") and "in boom" in w for w in error["where"])
    assert data["parts"]["precision"]["error"] == error["error"]
    assert data["parts"]["embed_shard"]["seconds"] == 0.5
    assert out.with_suffix(".png").is_file()
    _no_machine_paths(data, *seen)


def test_compare_reports_relative_error_and_non_finite_outputs() -> None:
    ref = {"y": torch.tensor([3.0, 4.0])}
    same = bench.compare({"y": torch.tensor([3.0, 4.0])}, ref)
    assert same["finite"] and same["rel_err"] == 0.0 and same["max_abs_diff"] == 0.0
    off = bench.compare({"y": torch.tensor([3.0, 4.5])}, ref)
    assert off["rel_err"] == pytest.approx(0.1) and off["max_abs_diff"] == pytest.approx(0.5)
    bad = bench.compare({"y": torch.tensor([float("nan"), 4.0])}, ref)
    assert bad["finite"] is False and bad["rel_err"] is None
