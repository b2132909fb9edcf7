"""The seed-methods cost benchmark (benchmarks/seed_methods.py) end to end with the tiny
pipeline and tiny CLIP, so the script cannot rot: every run is timed and positive, the
overheads are the recorded ratios minus one, memory is measured per run, the JSON carries
no machine paths and the plot is written."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from segloop.testing import all_strings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import seed_methods as bench  # noqa: E402

from segloop.data.classes import CAMVID  # noqa: E402

REPEATS = 2


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """main() --tiny once, into a temporary folder: the JSON, its path and what it printed."""
    out = tmp_path_factory.mktemp("seed-methods") / "seed_methods.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = bench.main(["--tiny", "--repeats", str(REPEATS), "--memory", "inprocess",
                           "--out", str(out)])  # no --threads: it would set this process's
    assert code == 0
    return json.loads(out.read_text()), out, printed.getvalue()



def test_every_timing_is_positive(result: tuple[dict[str, Any], Path, str]) -> None:
    data = result[0]
    keys = set(bench.SECONDS_KEY.values())
    assert set(data["seconds"]) == keys == set(data["rounds"]) == set(data["warmup_seconds"])
    for key in keys:
        assert data["seconds"][key] > 0 and data["warmup_seconds"][key] > 0
        rounds = data["rounds"][key]
        assert len(rounds) == REPEATS and all(t > 0 for t in rounds)
        assert min(rounds) <= data["seconds"][key] <= max(rounds)  # the median


def test_overheads_are_recorded_ratios_minus_one(result: tuple[dict[str, Any], Path, str]
                                                 ) -> None:
    data = result[0]
    s, rounds = data["seconds"], data["rounds"]
    for method, run in (("maskdiffusion", "unet_maskdiffusion_capture"),
                        ("g4seg", "unet_g4seg_injection")):
        overhead = data[f"overhead_{method}"]
        assert overhead == pytest.approx(s[run] / s["unet_bare"] - 1, abs=1e-4)
        paired = [a / b - 1 for a, b in zip(rounds[run], rounds["unet_bare"], strict=True)]
        assert data[f"overhead_{method}_per_round"] == pytest.approx(paired, abs=1e-3)
        target = data["targets"][method]
        assert target["measured"] == overhead
        assert target["met"] == (overhead <= bench.TARGET_OVERHEAD)


def test_summarize_on_known_rounds() -> None:
    runs = {name: [1.0, 2.0, 4.0] for name in bench.RUNS}
    runs["unet_maskdiffusion_capture"] = [1.05, 2.1, 4.2]  # +5% each round
    runs["unet_g4seg_injection"] = [1.5, 3.0, 4.4]  # +50%, +50%, +10%
    data = bench.summarize({"rounds": runs, "warmup": {n: 1.0 for n in bench.RUNS}})
    assert data["seconds"]["unet_bare"] == 2.0
    assert data["overhead_maskdiffusion"] == pytest.approx(0.05)
    assert data["targets"]["maskdiffusion"]["met"] is True
    assert data["overhead_g4seg"] == pytest.approx(0.5)  # from the medians 3.0 / 2.0
    assert data["overhead_g4seg_per_round"] == pytest.approx([0.5, 0.5, 0.1])
    assert data["targets"]["g4seg"]["met"] is False


def test_protocol_profile_and_memory(result: tuple[dict[str, Any], Path, str]) -> None:
    data = result[0]
    p = data["protocol"]
    assert (p["arch"], p["resolution"], p["latent"]) == ("tiny", 32, [1, 4, 16, 16])
    assert (p["dtype"], p["device"], p["repeats"]) == ("float32", "cpu", REPEATS)
    assert p["threads"] == torch.get_num_threads()
    assert p["classes"] == list(CAMVID.names) and p["token_columns"] >= len(CAMVID.names)
    assert "tiny" in p["clip_arch"]["name"] and p["image_hw"] == [360, 480]
    assert 0.3 <= p["g4seg"]["mask_fraction"] <= 0.34
    for run in bench.UNET_RUNS:  # every UNet run has attention layers and a whole call
        row = data["attention_profile"][run]
        assert row["call"] > 0 and 0 < row["attention"] <= row["call"]
        layers = {k: v for k, v in row.items() if k.startswith("attn")}
        assert {"attn1 8x8", "attn2 8x8"} <= set(layers)  # the tiny UNet's attention grid
        assert sum(layers.values()) == pytest.approx(row["attention"], abs=1e-5)
    assert data["memory_mode"] == "inprocess"
    assert set(data["peak_rss_mb"]) == set(bench.RUNS)
    for mem in data["peak_rss_mb"].values():
        assert mem["before"] > 0 and mem["peak"] >= mem["before"] and mem["method"]
        assert mem["delta"] == pytest.approx(mem["peak"] - mem["before"], abs=0.11)
    assert any("tiny run" in note for note in data["notes"])


def test_no_machine_paths_plot_and_table(result: tuple[dict[str, Any], Path, str]) -> None:
    data, out, printed = result
    text = out.read_text()
    for local in (str(out.parent), str(ROOT), str(Path.home())):
        assert local not in text
    for s in all_strings(data):
        assert not s.startswith(("/", "~")) and not re.search(r"\s/\w|[A-Za-z]:\\", s), s
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(bench.RUNS)  # header + one row per run


def test_memory_child_command_and_core() -> None:
    args = bench.parse_args(["--tiny", "--threads", "1", "--memory-child", "unet_bare"])
    cmd = bench._child_command(args, "g4seg")
    assert cmd[cmd.index("--memory-child") + 1] == "g4seg"
    assert "--tiny" in cmd and cmd[cmd.index("--threads") + 1] == "1"
    row = bench.memory_child(args)  # what the child process prints, run here
    assert row["run"] == "unet_bare" and row["peak"] > 0 and row["before"] > 0
