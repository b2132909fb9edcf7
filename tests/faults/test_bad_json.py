"""Files segloop reads back, truncated or corrupted: a SegloopError that names the file and
the fix, and the file itself left as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from segloop.errors import SegloopError

GOOD = '{"units": [], "budget": {"units": 1}, "strategy": "entropy", "pseudo": true}\n'
BROKEN = {
    "truncated": GOOD[: len(GOOD) // 2],
    "empty": "",
    "not-json": "\x00\x01binary",
    "a-list": "[1, 2, 3]\n",
}


def _settings(folder: Path) -> tuple[Path, Callable[[], object]]:
    from segloop.data.settings_file import check_settings

    return folder / "embed.json", lambda: check_settings(str(folder), {"a": 1}, "embed.json",
                                                          "embed.output")


def _al_round(folder: Path) -> tuple[Path, Callable[[], object]]:
    from segloop.active.state import read_round_meta

    return folder / "round.json", lambda: read_round_meta(folder)


def _pseudo_round(folder: Path) -> tuple[Path, Callable[[], object]]:
    from segloop.pseudolabel.store import read_round_meta

    return folder / "round.json", lambda: read_round_meta(folder)


def _units(folder: Path) -> tuple[Path, Callable[[], object]]:
    from segloop.active.human import UNITS_FILE, _selection_back

    return folder / UNITS_FILE, lambda: _selection_back(folder)


def _checkpoint(folder: Path) -> tuple[Path, Callable[[], object]]:
    from segloop.train.checkpoint import read_meta

    return folder / "model.safetensors", lambda: read_meta(folder / "model.safetensors")


@pytest.mark.parametrize("broken", sorted(BROKEN))
@pytest.mark.parametrize("reader", [_settings, _al_round, _pseudo_round, _units, _checkpoint],
                         ids=lambda f: f.__name__.lstrip("_"))
def test_corrupt_file_gives_a_clear_error_and_stays_as_it_was(
        tmp_path: Path, reader: Callable[[Path], tuple[Path, Callable[[], object]]],
        broken: str) -> None:
    path, read = reader(tmp_path)
    path.write_text(BROKEN[broken], encoding="latin-1")
    before = path.read_bytes()
    with pytest.raises(SegloopError) as info:
        read()
    message = str(info.value)
    assert str(path) in message
    assert any(word in message for word in ("rerun", "restore", "delete", "set ", "checkout"))
    assert path.read_bytes() == before


def test_units_file_of_the_wrong_shape(tmp_path: Path) -> None:
    from segloop.active.human import UNITS_FILE, _selection_back

    (tmp_path / UNITS_FILE).write_text('{"units": [{"nope": 1}], "budget": {}}')
    with pytest.raises(SegloopError, match=r"does not describe a round's units.*export"):
        _selection_back(tmp_path)
