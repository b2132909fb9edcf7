"""Every test runs under a timeout: a hang fails with the test's name, slow tests get longer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SLEEPY = '''
import time
import pytest

def test_hangs():
    time.sleep(4)

@pytest.mark.slow
def test_slow_one_may_take_longer():
    time.sleep(4)

@pytest.mark.slow
@pytest.mark.timeout(2)
def test_slow_with_its_own_timeout():
    time.sleep(4)
'''


def test_the_suite_has_a_global_timeout(request: pytest.FixtureRequest) -> None:
    assert float(request.config.getini("timeout")) == 300


def test_a_hang_fails_with_its_name_and_slow_tests_get_longer(tmp_path: Path) -> None:
    """The project's own pytest settings and conftest, a 1 s default timeout, three tests."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_sleepy.py").write_text(SLEEPY)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "timeout=1",
         "-m", "slow or not slow", "-rA", "test_sleepy.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    report = out.stdout + out.stderr
    assert out.returncode == 1, report
    assert "FAILED test_sleepy.py::test_hangs" in report
    assert "PASSED test_sleepy.py::test_slow_one_may_take_longer" in report
    assert "FAILED test_sleepy.py::test_slow_with_its_own_timeout" in report
    assert "Timeout" in report
