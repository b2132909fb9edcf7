"""Import modules that compile ASTs at import time without tripping CPython 3.11's AST race.

CPython 3.11.0-3.11.7 keep one AST recursion counter per interpreter, shared by all threads
(cpython gh-106905, fixed in 3.11.8 and 3.12.2): a garbage collection inside ``ast.parse`` or
``compile(tree)`` can hand the GIL to another thread that converts an AST too, and the first
conversion then fails with ``SystemError: AST constructor recursion depth mismatch``.
Prefect's server imports ``key_value.aio`` (through ``docket``), whose modules are compiled
from rewritten ASTs by beartype's import hook, so importing the server is exposed to the
race whenever other threads run (CI saw it once, in the test harness's import). Pausing the
collector for the import keeps every conversion of that import on one thread: without a
collection no Python code runs inside the conversion, so the GIL cannot change hands.
"""

from __future__ import annotations

import gc
import importlib
from types import ModuleType


def import_without_gc(name: str) -> ModuleType:
    """``importlib.import_module(name)`` with the garbage collector paused (harmless where the
    race is fixed: 3.11.8+, 3.12.2+); its previous state is restored, also when the import
    fails."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        if was_enabled:
            gc.enable()
