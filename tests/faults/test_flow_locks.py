"""Two runs on one output, as real processes: the second flow is refused at once, names the
run that holds the output, and writes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from segloop.config import load_config
from segloop.errors import BusyError, ConfigError
from segloop.reliability import cases

HOLD = """
import sys, time
from segloop.runlock import output_lock
with output_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


@contextmanager
def held_by_another_process(target: Path | str, flow: str) -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target), flow],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _embed(tmp: Path) -> tuple[Callable[..., Any], Path]:
    from segloop.flows.embed import embed_flow

    return embed_flow, tmp / "ws" / "data" / "embeddings" / "camvid"


def _synthesize(tmp: Path) -> tuple[Callable[..., Any], Path]:
    from segloop.flows.synthesize import synthesize_flow

    return synthesize_flow, tmp / "ws" / "data" / "synthetic" / "toy"


def _smoke(tmp: Path) -> tuple[Callable[..., Any], Path]:
    from segloop.flows.smoke import smoke_flow

    return smoke_flow, tmp / "ws" / "data" / "datasets" / "camvid-smoke"


def _pseudolabel(tmp: Path) -> tuple[Callable[..., Any], Path]:
    from segloop.flows.pseudolabel import pseudolabel_flow

    return pseudolabel_flow, tmp / "ws" / "work" / "pseudolabels" / "sam_clip"


def _active_learning(tmp: Path) -> tuple[Callable[..., Any], Path]:
    from segloop.flows.active_learning import active_learning_flow

    return active_learning_flow, tmp / "ws" / "data" / "labels"


def _smoke_rounds(tmp: Path) -> tuple[Callable[..., Any], Path]:
    from segloop.flows.smoke import smoke_flow

    return smoke_flow, tmp / "ws" / "data" / "labels"


@pytest.mark.parametrize("case", [_embed, _synthesize, _smoke, _smoke_rounds, _pseudolabel,
                                  _active_learning],
                         ids=lambda f: f.__name__.lstrip("_"))
def test_a_second_run_on_a_held_output_is_refused_and_writes_nothing(
        prefect_harness: None, tmp_path: Path,
        case: Callable[[Path], tuple[Callable[..., Any], Path]]) -> None:
    flow, target = case(tmp_path)
    name = case.__name__.lstrip("_").replace("smoke_rounds", "smoke")
    cfg = load_config(cases.pipeline(name, tmp_path))
    with held_by_another_process(target, "other") as pid:
        with pytest.raises(BusyError, match=rf"being written by the other run of pid {pid}"):
            flow(config=cfg)
    assert not target.exists() or not any(target.iterdir())


def test_smoke_refuses_a_dataset_dir_outside_the_workspace(
        prefect_harness: None, tmp_path: Path) -> None:
    from segloop.flows.smoke import smoke_flow

    victim = tmp_path / "users-files"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    cfg = load_config(cases.pipeline("smoke", tmp_path))
    cfg = cfg.model_copy(update={"smoke": cfg.smoke.model_copy(
        update={"dataset_dir": "../users-files"})})
    with pytest.raises(ConfigError, match="not a folder inside the workspace"):
        smoke_flow(config=cfg)
    assert (victim / "keep.txt").read_text() == "mine"
