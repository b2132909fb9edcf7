"""A remote URL with a password: the password stays out of git, out of errors and out of
the Workspace object; a failed push is a RemoteError (the retry policy retries it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from segloop.errors import RemoteError
from segloop.versioning import init_workspace, version_path
from segloop.versioning.commands import redact
from segloop.versioning.workspace import split_credentials

SECRET = "s3cr3t-pw"


def test_split_and_redact() -> None:
    assert split_credentials(f"https://alice:{SECRET}@dvc.example.com:8443/store") == (
        "https://alice@dvc.example.com:8443/store", SECRET)
    assert split_credentials("s3://bucket/dvc") == ("s3://bucket/dvc", None)
    assert split_credentials("/srv/dvc") == ("/srv/dvc", None)
    text = f"`dvc push` to https://alice:{SECRET}@h/x failed; ssh://bob:pw@h2 too"
    assert redact(text) == "`dvc push` to https://alice:***@h/x failed; ssh://bob:***@h2 too"


def test_password_never_reaches_git_or_errors(tmp_path: Path, git,  # type: ignore[no-untyped-def]
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGLOOP_DVC_TIMEOUT", "120")
    url = f"https://alice:{SECRET}@dvc.invalid/store"
    ws = init_workspace(tmp_path / "ws", url)
    root = ws.root
    assert SECRET not in ws.remote_url and SECRET not in repr(ws)
    assert SECRET not in (root / ".dvc" / "config").read_text()
    assert SECRET in (root / ".dvc" / "config.local").read_text()
    assert ".dvc/config.local" not in git(root, "ls-files")
    assert SECRET not in git(root, "log", "-p", "--all")
    (root / "data").mkdir()
    (root / "data" / "a.txt").write_text("a")
    with pytest.raises(RemoteError) as info:  # no network here: the push fails
        version_path(ws, "data", "data: a")
    assert SECRET not in str(info.value) and "alice" in str(info.value)
    assert "data.dvc" in git(root, "ls-files")  # the commit is kept; a rerun pushes again
