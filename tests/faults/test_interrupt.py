"""Ctrl-C during `segloop run`: a prompt exit with one line, and the flow run recorded as
Cancelled in Prefect's database (not left Running)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

from segloop.reliability import cases, harness


def test_ctrl_c_stops_the_flow_and_records_it_cancelled(tmp_path: Path) -> None:
    config = cases.pipeline("active_learning", tmp_path)
    # long enough training that the flow is surely still running when Ctrl-C comes
    cfg = yaml.safe_load(config.read_text())
    cfg["train"]["steps"] = 100_000
    config.write_text(yaml.safe_dump(cfg))
    home = tmp_path / "prefect"  # the pipeline's base.paths.prefect_home
    proc = subprocess.Popen(_run_command("active_learning", config), cwd=harness.REPO,
                            env=_own_server_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=_ctrl_c_live)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait until the loop is training round 0
        seen.append(line)
        if "training on" in line:
            break
    else:
        raise AssertionError("".join(seen[-30:]))
    time.sleep(1.0)
    masks = _signal_masks(proc.pid)
    stopped = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    try:
        rest, _ = proc.communicate(timeout=120)  # before: about 150 s of retries
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"Ctrl-C did not stop the run; child {masks}, this process's "
                             f"SIGINT handler {signal.getsignal(signal.SIGINT)}") from None
    took = time.monotonic() - stopped
    assert proc.returncode == 130, rest[-3000:]
    assert "Traceback" not in rest and "ConnectError" not in rest, rest[-3000:]
    assert "interrupted; a rerun resumes" in rest
    with sqlite3.connect(home / "prefect.db") as db:
        states = db.execute("select state_type from flow_run").fetchall()
    assert states == [("CANCELLED",)], (states, took)


def _run_command(flow: str, config: Path) -> list[str]:
    return [sys.executable, "-m", "segloop.cli", "run", flow, "--pipeline", str(config)]


def _own_server_env() -> dict[str, str]:
    """The environment of a user's `segloop run`: no Prefect server configured, so the run
    starts its own temporary one (under the pipeline's prefect_home)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PREFECT_API") and k != "PREFECT_HOME"}
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", PREFECT_LOGGING_LEVEL="INFO")
    return env


def _ctrl_c_live() -> None:
    """In the child: SIGINT as in a terminal. A suite started in the background (`make test
    &`, nohup) ignores SIGINT, and children inherit that, so Ctrl-C would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_masks(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return " ".join(ln for ln in status if ln.startswith(("SigIgn", "SigCgt", "SigBlk")))


def test_a_finished_run_ends_cleanly(tmp_path: Path) -> None:
    """`segloop run` to the end: exit 0, and no log line is lost to (or complains about) the
    temporary server stopping before Prefect's log worker has sent everything."""
    config = cases.pipeline("smoke", tmp_path)
    done = subprocess.run(_run_command("smoke", config), cwd=harness.REPO,
                          env=_own_server_env(), capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "Error logging to API" not in out and "connection attempts failed" not in out, \
        out[-3000:]
