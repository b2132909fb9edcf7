"""What `pip install segloop` puts on sys.path: one package, `segloop`, with the Prefect
front-ends inside it (`segloop.flows`, `segloop.tasks`), and no generic top-level names."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> tuple[list[str], dict[str, str]]:
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return setup["packages"], setup["package-dir"]


def test_the_package_list_covers_every_folder() -> None:
    packages, dirs = _declared()
    found = {"segloop." + ".".join(p.parent.relative_to(ROOT / "src/segloop").parts)
             for p in (ROOT / "src/segloop").rglob("__init__.py")}
    found = {name.rstrip(".") for name in found} | {"segloop.flows", "segloop.tasks"}
    assert sorted(packages) == sorted(found)
    assert dirs == {"segloop": "src/segloop", "segloop.flows": "flows", "segloop.tasks": "tasks"}


def test_the_wheel_has_no_top_level_flows_or_tasks(tmp_path: Path) -> None:
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("src", "flows", "tasks"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", str(src), "-w", str(tmp_path)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("segloop-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"segloop", wheel.name.split("-py")[0]
                                                 + ".dist-info"}
    for module in ("flows/active_learning.py", "flows/_server.py", "tasks/active.py",
                   "tasks/_retry.py"):
        assert f"segloop/{module}" in names


def test_the_flows_import_as_segloop_flows() -> None:
    from segloop.flows import active_learning
    from segloop.tasks import active

    assert Path(active_learning.__file__).parent == ROOT / "flows"
    assert Path(active.__file__).parent == ROOT / "tasks"
