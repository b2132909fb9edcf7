"""Lineage records: written with the artifact, only when it changes, walked by the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from segloop.config import Config
from segloop.errors import VersioningError
from segloop.versioning import commit_round, lineage, version_path


def _write(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text(text)


def test_config_hash_is_stable_and_sees_every_setting() -> None:
    a, b = Config(), Config()
    assert lineage.config_hash(a) == lineage.config_hash(b)
    assert re.fullmatch(r"[0-9a-f]{16}", lineage.config_hash(a))
    changed = Config.model_validate({"base": {"seed": a.base.seed + 1}})
    assert lineage.config_hash(changed) != lineage.config_hash(a)
    assert lineage.config_hash({"x": 1, "y": 2}) == lineage.config_hash({"y": 2, "x": 1})


def test_code_identity_names_this_checkout() -> None:
    code = lineage.code_identity()
    assert code["segloop_version"]
    assert code["sha"] is None or re.fullmatch(r"[0-9a-f]{40}", code["sha"])
    if code["sha"] is not None:  # this checkout is a git tree (CI clones one)
        assert isinstance(code["dirty"], bool)


def test_record_drops_parents_that_do_not_apply() -> None:
    rec = lineage.make_record("model", None, [None, lineage.Parent("labels", "d/r", "c" * 40)])
    assert rec["parents"] == [{"role": "labels", "path": "d/r", "commit": "c" * 40}]
    assert rec["config_hash"] is None and rec["flow_run_id"] is None  # outside a flow run
    assert rec["kind"] == "model" and rec["schema"] == lineage.SCHEMA


def test_recorded_with_the_data_and_only_when_it_changes(shared_ws, git) -> None:
    root = shared_ws.root
    _write(root / "data" / "ds", "v1")
    rec = lineage.make_record("dataset", Config(), [lineage.Parent("source", source="s3://b/x")])
    first = version_path(shared_ws, "data/ds", "dataset v1", lineage=rec)
    stored = json.loads(git(root, "show", f"{first}:data/ds.lineage.json"))
    assert stored["path"] == "data/ds" and stored["parents"][0]["source"] == "s3://b/x"
    assert set(git(root, "show", "--name-only", "--format=", first).split()) >= {
        "data/ds.dvc", "data/ds.lineage.json"}
    # unchanged data, a new record (another run): no commit, the first record stays
    again = version_path(shared_ws, "data/ds", "dataset v1 again",
                         lineage=lineage.make_record("dataset", None, []))
    assert again == first
    assert json.loads((root / "data/ds.lineage.json").read_text())["config_hash"] is not None
    # changed data: a new record in the new commit
    _write(root / "data" / "ds", "v2")
    second = version_path(shared_ws, "data/ds", "dataset v2",
                          lineage=lineage.make_record("dataset", None, []))
    assert second != first
    assert json.loads(git(root, "show", f"{second}:data/ds.lineage.json"))["config_hash"] is None
    assert lineage.versioned(root, "data/ds", "dataset").commit == second
    assert lineage.versioned(root, "data/never", "dataset") is None


def test_chain_from_a_tag_through_rounds_and_a_model(shared_ws) -> None:
    root = shared_ws.root
    _write(root / "data" / "pool", "images")
    version_path(shared_ws, "data/pool", "pool",
                 lineage=lineage.make_record("dataset", None, []))
    pool = lineage.data_parent(root, str(root / "data" / "pool"))
    assert pool.path == "data/pool" and pool.commit
    outside = lineage.data_parent(root, "/somewhere/else")
    assert outside.source == "/somewhere/else" and outside.commit is None

    r0 = commit_round(shared_ws, 0, lambda f: (f / "l.txt").write_text("0"),
                      lineage=lineage.make_record("label round", None, [pool]))
    labels0 = lineage.versioned(root, "data/labels/round_000", "labels", r0.tag)
    _write(root / "models", "weights")
    version_path(shared_ws, "models", "model 0",
                 lineage=lineage.make_record("model", None, [labels0]))
    model = lineage.versioned(root, "models", "selected by model")
    prev = lineage.versioned(root, "data/labels/round_000", "previous round", r0.tag)
    r1 = commit_round(shared_ws, 1, lambda f: (f / "l.txt").write_text("1"),
                      lineage=lineage.make_record("label round", None, [prev, model, pool]))

    steps = lineage.chain(root, lineage.resolve(root, r1.tag))
    assert [(d, p.role, p.path) for d, p, _ in steps] == [
        (0, "artifact", "data/labels/round_001"),
        (1, "previous round", "data/labels/round_000"),
        (2, "dataset", "data/pool"),
        (1, "selected by model", "models"),
        (2, "labels", "data/labels/round_000"),  # reached again: listed, not expanded
        (1, "dataset", "data/pool"),
    ]
    text = lineage.format_chain(root, r1.tag)
    assert text.splitlines()[0].startswith(f"label round data/labels/round_001 (tag {r1.tag}")
    assert "    selected by model: model models (commit" in text
    assert "(shown above)" in text
    assert json.loads(lineage.record_json(root, "models"))[0]["record"]["kind"] == "model"
    # PATH@COMMIT gives that version's record
    assert lineage.resolve(root, f"data/pool@{pool.commit}").commit == pool.commit


def test_refs_without_lineage_say_what_to_give(shared_ws, git) -> None:
    root = shared_ws.root
    with pytest.raises(VersioningError, match="neither a tag nor a path"):
        lineage.resolve(root, "no/such/thing")
    git(root, "tag", "old-tag", "HEAD~0")  # HEAD records lineage, so move to the setup commit
    first = git(root, "rev-list", "--max-parents=0", "HEAD")
    git(root, "tag", "-f", "old-tag", first)
    with pytest.raises(VersioningError, match="made before segloop recorded lineage"):
        lineage.resolve(root, "old-tag")
