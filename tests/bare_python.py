"""A stand-in for a worker Python that lacks some packages (QGIS's own Python on a fresh install)."""

from __future__ import annotations

import sys
from pathlib import Path

BARE_PYTHON = """
import importlib.abc, runpy, sys

BLOCKED = {blocked!r}


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Block())
args = sys.argv[1:]
assert args[0] == "-m", args
sys.argv = [args[1], *args[2:]]
runpy.run_module(args[1], run_name="__main__", alter_sys=True)
"""


def python_without(tmp_path: Path, blocked: tuple[str, ...]) -> str:
    """An executable that behaves like ``python -m ...`` but cannot import ``blocked``."""
    script = tmp_path / "bare_python.py"
    script.write_text(BARE_PYTHON.format(blocked=set(blocked)))
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    python.chmod(0o755)
    return str(python)
