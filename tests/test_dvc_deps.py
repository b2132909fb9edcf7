"""dvc.yaml's deps cover every segloop module each stage's flow can import (read from the
source, function-level imports included), so `dvc repro` never skips a changed stage.

Run this file as a script to print each stage's deps as they should read; with ``--write``
it puts them into dvc.yaml (keeping each stage's comments and report deps)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ROOTS = {"segloop.flows": ROOT / "flows", "segloop.tasks": ROOT / "tasks",
         "segloop": ROOT / "src" / "segloop"}
ENTRY = {"smoke": "segloop.flows.smoke", "active_learning": "segloop.flows.active_learning",
         "embed": "segloop.flows.embed", "synthesize": "segloop.flows.synthesize",
         "pseudolabel": "segloop.flows.pseudolabel"}


def module_file(name: str) -> Path | None:
    """The source file of a segloop module (None for names that are not modules)."""
    for prefix, folder in ROOTS.items():  # the longest prefixes come first
        if name == prefix or name.startswith(prefix + "."):
            rest = name[len(prefix):].lstrip(".").split(".") if name != prefix else []
            base = folder.joinpath(*rest)
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    return candidate
            return None
    return None


def imported(tree: ast.AST) -> set[str]:
    """segloop modules imported anywhere in ``tree`` (packages and their modules)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "segloop":
                parts = name.split(".")
                out.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return out


def closure(entry: str) -> set[Path]:
    """Every file the module ``entry`` reaches, plus what `segloop run` loads before it."""
    cli = ROOT / "src/segloop/cli.py"
    todo = [entry, "segloop.cli", "segloop.flows._server"]
    seen: set[str] = set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        files.add(path)
        tree = ast.parse(path.read_text())
        if path == cli:  # the CLI's other commands import other flows: only its top level
            tree = ast.Module(body=[s for s in tree.body
                                    if isinstance(s, ast.Import | ast.ImportFrom)],
                              type_ignores=[])
        todo += sorted(imported(tree))
    return files


def needed_deps(entry: str) -> list[str]:
    """The deps a stage should declare: each package folder it touches, its top-level
    modules, and its flow and task files."""
    deps = set()
    for path in closure(entry):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "src" and len(rel.parts) > 3:
            deps.add("/".join(rel.parts[:3]))  # src/segloop/<package>
        else:
            deps.add(rel.as_posix())
    return sorted(deps)


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def test_every_stage_depends_on_every_module_its_flow_imports() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(ENTRY)
    for stage, entry in ENTRY.items():
        declared = [d for d in stages[stage]["deps"] if not d.startswith("reports/")]
        files = {p.relative_to(ROOT).as_posix() for p in closure(entry)}
        missing = sorted(f for f in files if not _covered(f, declared))
        assert not missing, (f"dvc.yaml stage {stage!r} does not list {missing}: run "
                             f"`python tests/{Path(__file__).name} --write`")
        # and each of these is a module the stage needs (no stale entries)
        stale = [d for d in declared if not any(_covered(f, [d]) for f in files)]
        assert not stale, f"dvc.yaml stage {stage!r} lists deps it never imports: {stale}"


def test_the_dag_feeds_pseudolabel_from_embed_and_synthesize() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outs = {stage: {next(iter(m)) for m in spec.get("metrics", [])}
            for stage, spec in stages.items()}
    upstream = {s for s, files in outs.items() for f in files
                if f in stages["pseudolabel"]["deps"]}
    assert upstream == {"embed", "synthesize"}


def test_the_closure_follows_function_level_imports() -> None:
    files = {p.relative_to(ROOT).as_posix() for p in closure(ENTRY["active_learning"])}
    # imported inside functions only (pool.compute_regions, train factory, ...)
    assert "src/segloop/active/sam_regions.py" in files
    assert "src/segloop/config/active.py" in files and "tasks/active.py" in files
    assert "flows/embed.py" not in files  # another stage's flow


def write_deps(path: Path) -> None:
    """Rewrite each stage's module deps in ``path`` (comments and reports/ deps stay)."""
    text = path.read_text()
    for stage, entry in ENTRY.items():
        m = re.search(rf"\n  {stage}:\n(?:.*\n)*?    deps:\n((?:      (?:- |#).*\n)+)", text)
        if m is None:
            raise SystemExit(f"{path}: no deps list for stage {stage}")
        keep = [line for line in m.group(1).splitlines(True)
                if "reports/" in line or line.strip().startswith("#")]
        new = "".join(keep) + "".join(f"      - {d}\n" for d in needed_deps(entry))
        text = text[:m.start(1)] + new + text[m.end(1):]
    path.write_text(text)


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_deps(ROOT / "dvc.yaml")
    else:
        for stage, entry in ENTRY.items():
            print(f"{stage}:\n" + "\n".join(f"  - {d}" for d in needed_deps(entry)))
    sys.exit(0)
