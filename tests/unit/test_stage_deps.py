"""Each DVC stage depends on exactly the code it runs: its script and every module of src/ that the
script imports, directly or through others (imports inside functions too), plus, for train, the
modules conf/ names for it to instantiate (callbacks). A directory may stand for its modules when
the stage imports all of them. So a missed dependency, or one the stage no longer runs, fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from ..conftest import ROOT

SRC = ROOT / "src"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
INSTANTIATES_FROM_CONF = {"train"}  # the stages whose script instantiates conf/'s _target_s


def module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imported(path: Path) -> set[Path]:
    """The files of src/ a module imports (and the packages' __init__.py on the way)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    parts = [name.split(".") for name in names]
    found = {module_file(".".join(p[:i])) for p in parts for i in range(1, len(p) + 1)}
    return found - {None}


def closure(start: set[Path]) -> set[Path]:
    seen, todo = set(), list(start)
    while todo:
        if (path := todo.pop()) not in seen:
            seen.add(path)
            todo += imported(path)
    return seen


def named_in_conf() -> set[Path]:
    targets = re.findall(
        r"_target_:\s*(digitpipe[\w.]+)", "".join(p.read_text() for p in (ROOT / "conf").rglob("*.yaml"))
    )
    return {module_file(target.rsplit(".", 1)[0]) for target in targets}


def declared_code(stage: dict) -> set[Path]:
    files = set()
    for dep in stage["deps"]:
        path = ROOT / (next(iter(dep)) if isinstance(dep, dict) else dep)
        if path.is_relative_to(SRC):
            files |= set(path.rglob("*.py")) if path.is_dir() else {path}
    return {f for f in files if "__pycache__" not in f.parts}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_depends_on_the_code_it_runs_and_nothing_else(name):
    stage = STAGES[name]
    script = ROOT / re.search(r"python (src/\S+\.py)", stage["cmd"]).group(1)
    runs = closure({script} | (named_in_conf() if name in INSTANTIATES_FROM_CONF else set()))
    declared = declared_code(stage)
    relative = lambda paths: sorted(str(p.relative_to(ROOT)) for p in paths)  # noqa: E731
    assert relative(runs - declared) == [], "imported but not in deps"
    assert relative(declared - runs) == [], "in deps but not imported"


def test_the_main_pipeline_imports_neither_extension():
    scripts = {
        SRC / f"{stage}.py" for stage in ("download", "preprocess", "train", "evaluate", "check_params")
    }
    packages = {p.relative_to(SRC).parts[0] for p in closure(scripts | named_in_conf())}
    assert packages <= {"digitpipe", *(s.name for s in scripts)}, packages


def test_a_sub_pipelines_stage_depends_on_its_script_and_every_package_it_imports():
    """Their stages depend on whole packages (../../src/<package>): the main one, and the extension
    whose code they run (a comment in it reruns them, never the main pipeline)."""
    for dvc_yaml in sorted((ROOT / "pipelines").glob("*/dvc.yaml")):
        for name, stage in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
            scripts = {dvc_yaml.parent / s for s in re.findall(r"python (\S+\.py)", stage["cmd"])}
            deps = {
                (dvc_yaml.parent / (next(iter(d)) if isinstance(d, dict) else d)).resolve()
                for d in stage.get("deps", [])
            }
            packages = {SRC / p.relative_to(SRC).parts[0] for p in closure(scripts) if p.is_relative_to(SRC)}
            wanted = {p.resolve() for p in scripts} | {p for p in packages if p.is_dir()}
            missing = [w for w in wanted if not any(w == d or d in w.parents for d in deps)]
            assert missing == [], (dvc_yaml, name, sorted(map(str, missing)))
