"""Two runs at once on one workspace, as real processes: each pair must either both
finish, or one be refused at once with a message naming the run that holds the output;
after the refused one is rerun, nothing is corrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from segloop.reliability import harness

#: (first flow, second flow) started together on one case folder (one workspace).
PAIRS: tuple[tuple[str, str], ...] = (
    ("smoke", "smoke"),
    ("synthesize", "synthesize"),
    ("embed", "embed"),
    ("active_learning", "active_learning"),
    ("pseudolabel", "pseudolabel"),
    ("synthesize", "embed"),
    ("smoke", "synthesize"),
    ("embed", "active_learning"),
)
# smoke and active_learning on one workspace are refused by design (smoke's label rounds
# are not the loop's): ConfigError "point base.paths.workspace ... at a workspace of its own"

REFUSED = "being written by"


@dataclass
class PairResult:
    flows: tuple[str, str]
    codes: tuple[int, int]
    refused: int
    safe: bool
    problems: list[str]


def run_pair(pair: tuple[str, str], base: Path, api_url: str | None,
             timeout: float = 900) -> PairResult:
    """Start both flows of ``pair`` on ``base`` (the second 0.5 s after the first), wait,
    rerun any refused one, and check the workspace's invariants."""
    configs = [harness.prepare_case(flow, base, api_url) for flow in pair]
    procs = [harness.start_flow(pair[0], configs[0], api_url)]
    time.sleep(0.5)
    procs.append(harness.start_flow(pair[1], configs[1], api_url))
    outputs, codes = [], []
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
        outputs.append(out)
        codes.append(p.returncode)
    problems, refused = [], 0
    for flow, config, code, out in zip(pair, configs, codes, outputs, strict=True):
        if code == 0:
            continue
        if code == 2 and REFUSED in out:
            refused += 1
            again = harness.run_flow(flow, config, api_url)
            if again.code != 0:
                problems.append(f"{flow} refused, then its rerun failed:\n{again.output[-1500:]}")
        else:
            problems.append(f"{flow} failed (exit {code}) instead of finishing or being "
                            f"refused:\n{out[-1500:]}")
    if not any(c == 0 for c in codes):
        problems.append("neither run finished")
    if not problems:
        problems += harness.snapshot(base).problems
    return PairResult(pair, (codes[0], codes[1]), refused, not problems, problems)


