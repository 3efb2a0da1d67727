"""The core and the CLI never import QGIS (they run in the worker and in plain Python)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "paligemma_qgis"


def _modules(folder: str) -> list[str]:
    names = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_core_modules_found():
    names = _modules("core")
    for expected in (
        "paligemma_qgis.core",
        "paligemma_qgis.core.model.tokens",
        "paligemma_qgis.core.inputs.grid",
    ):
        assert expected in names
    assert "paligemma_qgis.core.inputs.raster" in names


def _imports_in_subprocess(modules: list[str]) -> dict:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'qgis' or m.startswith('qgis.'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a fresh Python importing all of core; the static check below stays fast
def test_importing_core_pulls_in_no_qgis():
    assert _imports_in_subprocess(_modules("core")) == []


def test_importing_cli_pulls_in_no_qgis():
    assert _imports_in_subprocess(["paligemma_qgis.cli", *_modules("cli")]) == []


def test_no_qgis_import_statement_outside_plugin():
    """Also catches imports hidden inside functions, which the subprocess test cannot see."""
    offenders = []
    for folder in ("core", "cli"):
        for path in (PACKAGE / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                if any(n == "qgis" or n.startswith("qgis.") for n in names):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_package_import_is_light():
    """QGIS imports the package at start-up: no rasterio, torch or transformers there."""
    code = (
        "import json, sys, paligemma_qgis\n"
        "print(json.dumps([m for m in ('torch', 'transformers', 'rasterio', 'geopandas', 'numpy') if m in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert json.loads(proc.stdout) == []


def _import_time_nodes(tree: ast.AST):
    """The statements that run when a module is imported: not those inside functions."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        yield node
        yield from _import_time_nodes(node)


def _third_party_imports(module: str) -> list[str]:
    """What a package module imports when it is imported that is neither the standard library
    nor the package itself (an import inside a function runs only when that function does)."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = path.with_suffix("") / "__init__.py"
    found = []
    for node in _import_time_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        top = {n.split(".")[0] for n in names}
        found += [
            n for n in top if n not in sys.stdlib_module_names and n not in ("__future__", PACKAGE.name)
        ]
    return found


def test_the_plugin_imports_only_standard_library_core_modules():
    """QGIS imports every plugin module; the core modules they bring (rules, errors and its
    catalogue, specs ...) must be standard library only, wherever they import (QGIS's Python
    may lack numpy, and must never load rasterio or torch)."""
    code = (
        "import importlib, json, pkgutil, sys\n"
        "from qgis.core import QgsApplication\n"
        "app = QgsApplication([], False)\n"
        "import paligemma_qgis.plugin as plugin\n"
        "for m in pkgutil.iter_modules(plugin.__path__):\n"
        "    importlib.import_module(f'paligemma_qgis.plugin.{m.name}')\n"
        "from paligemma_qgis.core.errors import catalogue\n"
        "catalogue()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('paligemma_qgis.core'))))\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    core = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"paligemma_qgis.core.rules", "paligemma_qgis.core.errors"} <= set(core)
    offenders = {module: _third_party_imports(module) for module in core}
    assert {m: names for m, names in offenders.items() if names} == {}
