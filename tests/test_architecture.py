"""The package keeps the shape issue 19 gave it (scripts/architecture.py measures it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _shape():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "scripts" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["architecture"] = module
    spec.loader.exec_module(module)
    return module, module.measure(ROOT)


def test_no_import_cycles() -> None:
    _, shape = _shape()
    assert shape.cycles == []


def test_small_modules_and_functions() -> None:
    module, shape = _shape()
    big = {m: n for m, n in shape.modules.items() if n > module.GOALS["max_module_lines"]}
    assert big == {}
    assert shape.long_functions == []


def test_core_is_typed_and_speaks_in_codes() -> None:
    module, shape = _shape()
    assert shape.core_any <= module.GOALS["core_any"]
    assert shape.flag_messages == []  # core never names a command-line flag
    assert shape.sentence_raises == []  # core errors carry a code; front ends word them


def test_the_measure_sees_a_cycle_and_a_sentence(tmp_path) -> None:
    """The yardstick itself: a planted cycle and a sentence raise are found."""
    module, _ = _shape()
    pkg = tmp_path / "paligemma_qgis" / "core"
    pkg.mkdir(parents=True)
    (tmp_path / "paligemma_qgis" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "b.py").write_text("from . import a\n\n\ndef g(x):\n    raise InputError(f'{x}: use --aoi')\n")
    shape = module.measure(tmp_path)
    assert shape.cycles == [["paligemma_qgis.core.a", "paligemma_qgis.core.b"]]
    assert len(shape.sentence_raises) == 1 and len(shape.flag_messages) == 1
