"""The import graph: xbarchar (ground floor) below the stages, pipeline (the workflow's view) above them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

STAGES = ("spice", "surrogate", "dnn")


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports, anywhere in it (function bodies included); relative imports
    count as the module's own package."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(path.relative_to(REPO).parts[0] if node.level else node.module.split(".")[0])
    return names


def offenders(package: str, forbidden: set[str]) -> dict[str, set[str]]:
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        bad = imported_packages(path) & forbidden
        if bad:
            found[str(path.relative_to(REPO))] = bad
    return found


def test_the_import_scan_sees_imports_inside_functions():
    module = REPO / "pipeline" / "config.py"  # imports the stages inside a function only
    assert set(STAGES) <= imported_packages(module)


def test_the_ground_floor_imports_no_stage_and_not_the_workflow():
    assert list((REPO / "xbarchar").glob("*.py"))
    assert offenders("xbarchar", {*STAGES, "pipeline"}) == {}


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_imports_the_workflow_package(stage):
    assert offenders(stage, {"pipeline"}) == {}


def test_the_workflow_package_imports_no_torch():
    code = ("import sys, pipeline.config, pipeline.params, pipeline.cache, pipeline.cluster, pipeline.interpreter;"
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
