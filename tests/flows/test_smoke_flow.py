"""The smoke flow end to end under Prefect's test harness, in a temporary workspace."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from segloop.config import Config, parse_config
from segloop.data.parquet import read_table
from segloop.data.schemas import LABEL_ROUND, MANIFEST
from segloop.smoke import restore_hint


def _config(tmp_path: Path, root: Path, n_images: int = 8, fraction: float = 0.25) -> Config:
    return parse_config({
        "base": {"seed": 3, "paths": {"workspace": str(tmp_path / "ws"),
                                      "dvc_remote": str(tmp_path / "remote"),
                                      "reports": str(tmp_path / "reports")}},
        "data": {"root": str(root), "split": "train"},
        "smoke": {"n_images": n_images, "label_fraction": fraction},
    })


def _git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, check=True, capture_output=True,
                          text=True).stdout.strip()


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_smoke_flow_end_to_end_and_rerun_is_a_no_op(
    prefect_harness: None, camvid_root: Path, tmp_path: Path
) -> None:
    from segloop.flows.smoke import smoke_flow

    cfg = _config(tmp_path, camvid_root)
    result = smoke_flow(config=cfg)
    ws = tmp_path / "ws"

    # manifest: 8 images, content ids, relative uris that exist
    dataset = Path(result.dataset_dir)
    manifest = read_table(str(dataset / "manifest.parquet"), MANIFEST)
    assert manifest.num_rows == 8
    for row in manifest.to_pylist():
        assert (dataset / row["image_uri"]).is_file() and (dataset / row["label_uri"]).is_file()
        assert len(row["image_id"]) == 16 and (row["height"], row["width"]) == (24, 32)
    # round 0: 25% of 8 = 2 labelled images, committed and tagged in the workspace only
    rnd = Path(result.round_path)
    assert rnd == ws / "data/labels/round_000"
    table = read_table(str(rnd / "round.parquet"), LABEL_ROUND)
    assert table.num_rows == 2 == result.labelled_images
    assert result.labelled_pixels == 2 * 24 * 32
    assert set(table.column("image_id").to_pylist()) <= set(manifest.column("image_id").to_pylist())
    assert sorted(p.name for p in (rnd / "labels").iterdir()) == sorted(
        f"{i}.png" for i in table.column("image_id").to_pylist())
    assert _git(ws, "tag", "--list", "labels/*") == "labels/r000"
    assert (ws / "data/labels/round_000.dvc").is_file()
    assert (tmp_path / "reports" / "smoke.json").is_file()
    hint = restore_hint(result, "p.yaml")
    assert "segloop rounds checkout 0 --pipeline p.yaml" in hint and str(rnd) in hint

    # rerun: same dataset, round 0 already committed -> no new commit, no new tag
    head = _git(ws, "rev-parse", "HEAD")
    before = _digest(rnd)
    again = smoke_flow(config=cfg)
    assert again.round_created is False
    assert _git(ws, "rev-parse", "HEAD") == head
    assert _git(ws, "tag", "--list", "labels/*") == "labels/r000"
    assert _digest(rnd) == before
    # the library's own log lines (logging, under segloop.*) are in the flow run's logs
    assert "label round 0 committed and tagged labels/r000" in _run_logs("segloop.versioning")


def _run_logs(prefix: str) -> str:
    """The messages of loggers named ``prefix``... that reached Prefect's API."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)

    async def read() -> list:  # type: ignore[type-arg]
        async with get_client() as client:
            return await client.read_logs(limit=200)

    logs = asyncio.run(read())
    return "\n".join(f"{r.name}: {r.message}" for r in logs
                     if r.name.startswith(prefix))


def test_smoke_flow_on_real_camvid_slice(
    prefect_harness: None, shared_camvid: Path, tmp_path: Path
) -> None:
    from segloop.flows.smoke import smoke_flow

    result = smoke_flow(config=_config(tmp_path, shared_camvid, n_images=3, fraction=0.1))
    manifest = read_table(str(Path(result.dataset_dir) / "manifest.parquet"), MANIFEST,
                          columns=["height", "width"]).to_pylist()
    assert manifest == [{"height": 360, "width": 480}] * 3
    assert result.labelled_images == 1 and result.labelled_pixels == 360 * 480
