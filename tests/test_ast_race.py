"""The guarded import pauses the garbage collector and always restores its state."""

from __future__ import annotations

import gc
import sys

import pytest

from segloop.ast_race import import_without_gc


@pytest.mark.parametrize("enabled", [True, False])
def test_import_restores_the_collector_state(
    enabled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    real = __import__("importlib").import_module

    def spy(name: str):  # noqa: ANN202 - the real signature
        seen.append(gc.isenabled())
        return real(name)

    monkeypatch.setattr("segloop.ast_race.importlib.import_module", spy)
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        module = import_without_gc("json")
        assert module is sys.modules["json"]
        assert seen == [False]  # paused during the import
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_a_failed_import_raises_and_restores_the_collector() -> None:
    assert gc.isenabled()
    with pytest.raises(ModuleNotFoundError, match="segloop_no_such_module"):
        import_without_gc("segloop_no_such_module")
    assert gc.isenabled()
