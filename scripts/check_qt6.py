"""Does the plugin run on QGIS 4 (Qt6, PyQt6) as well as on QGIS 3.22+ (Qt5)? A lint check.

    .venv/bin/python scripts/check_qt6.py [--pyqt6-python .venv-qt6/bin/python] [PATH ...]

Every Qt name the plugin imports from ``qgis.PyQt`` and every attribute it reads from one
(``QDialogButtonBox.ButtonRole.AcceptRole``) is resolved against the real PyQt6 (installed
from PyPI into its own small venv by ``make setup``; QGIS never sees it). Every attribute
read from a QGIS class is resolved against the QGIS 3.22 this machine runs, and a QGIS enum
value must be read through its enum (``Qgis.MessageLevel.Warning``, not ``Qgis.Warning``):
that spelling works on 3.22 and is the one QGIS 4 keeps.

On top come the rules of QGIS's own PyQt5->PyQt6 migration script
(scripts/pyqt5_to_pyqt6 in the QGIS sources), re-stated here: no ``exec_`` (call or
definition), no ``PyQt5`` imports, no ``QRegExp``, no ``qApp``, no ``QDesktopWidget``
(``QApplication.desktop()``), no ``QFontMetrics.width``, no ``activated[str]``, no compiled
resources (``resources_rc``), no ``QVariant()`` as NULL, no 8-argument ``QDateTime``, no
``addAction`` with 4 or more arguments, and the renamed enums (``Qt.MidButton`` ...).

An import inside ``except ImportError:`` is the Qt5 fallback of the import in its ``try:``
and is not resolved against PyQt6 (``from qgis.PyQt.QtGui import QAction`` with the
QtWidgets import as fallback is the portable way to get QAction).

Exit code 0: clean; 1: problems (one line each, ``file:line:col: message``); 2: the check
could not run (no PyQt6 venv: run ``make setup``).

Why one file: the AST walk, the rules and the PyQt6 resolver are one check; the resolver runs
this same file in the PyQt6 venv (``--resolve``) so both sides share one definition.
"""

from __future__ import annotations

import argparse
import ast
import enum
import importlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PATHS = [REPO / "paligemma_qgis"]
DEFAULT_PYQT6 = REPO / ".venv-qt6" / "bin" / "python"
QT_MODULES = (
    "QtCore",
    "QtGui",
    "QtWidgets",
    "QtNetwork",
    "QtXml",
    "QtSvg",
    "QtSql",
    "QtTest",
    "QtPrintSupport",
)
QGIS_MODULES = ("core", "gui", "analysis")
# (owner, name) -> the spelling Qt6 keeps (QGIS migration script: deprecated_renamed_enums).
RENAMED_ENUMS = {
    ("Qt", "MidButton"): "Qt.MouseButton.MiddleButton",
    ("Qt", "TextColorRole"): "Qt.ItemDataRole.ForegroundRole",
    ("Qt", "BackgroundColorRole"): "Qt.ItemDataRole.BackgroundRole",
    ("QPainter", "HighQualityAntialiasing"): "QPainter.RenderHint.Antialiasing",
}
REMOVED_NAMES = {
    "QRegExp": "QRegExp is gone in Qt6: use QRegularExpression (Qt5 has it too)",
    "QRegExpValidator": "QRegExpValidator is gone in Qt6: use QRegularExpressionValidator",
    "QDesktopWidget": "QDesktopWidget is gone in Qt6: use QScreen (QApplication.primaryScreen())",
    "qApp": "qApp is gone in PyQt6: use QApplication.instance()",
}


@dataclass
class Binding:
    """What a name in a module stands for: a Qt or QGIS module, or a name imported from one."""

    kind: str  # "qt" or "qgis"
    module: str  # "QtWidgets" / "core"
    name: str | None  # None: the module itself


@dataclass
class Reference:
    """An attribute chain to resolve: ``module.path[0].path[1]...`` at file:line:col."""

    kind: str
    module: str
    path: list[str]
    where: str


@dataclass
class FileScan:
    problems: list[str] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)


def _fallback_imports(tree: ast.AST) -> set[int]:
    """ids of the import nodes that sit in an ``except ImportError`` handler (Qt5 fallbacks)."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        for handler in node.handlers:
            names = []
            if isinstance(handler.type, ast.Name):
                names = [handler.type.id]
            elif isinstance(handler.type, ast.Tuple):
                names = [e.id for e in handler.type.elts if isinstance(e, ast.Name)]
            if {"ImportError", "ModuleNotFoundError"} & set(names):
                ids |= {id(n) for child in handler.body for n in ast.walk(child)}
    return ids


def _binding_of_module(module: str) -> Binding | None:
    parts = module.split(".")
    if parts[:2] == ["qgis", "PyQt"] and len(parts) == 3 and parts[2] in QT_MODULES:
        return Binding("qt", parts[2], None)
    if parts[0] == "qgis" and len(parts) == 2 and parts[1] in QGIS_MODULES:
        return Binding("qgis", parts[1], None)
    return None


def scan_file(path: Path, root: Path) -> FileScan:
    """The rule problems of one file, and the Qt/QGIS references it makes."""
    scan = FileScan()
    text = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        scan.problems.append(f"{_rel(path, root)}:{exc.lineno}:{exc.offset}: not valid Python ({exc.msg})")
        return scan
    fallback = _fallback_imports(tree)
    bindings: dict[str, Binding] = {}

    def where(node: ast.AST) -> str:
        return f"{_rel(path, root)}:{node.lineno}:{node.col_offset + 1}"

    def problem(node: ast.AST, message: str) -> None:
        scan.problems.append(f"{where(node)}: {message}")

    # Imports first (bindings are module-wide for this check; the plugin imports at the top).
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            if module.split(".")[0] == "PyQt5":
                problem(node, f"import from qgis.PyQt, not {module} (QGIS maps it to PyQt5 or PyQt6)")
                continue
            if module == "qgis.PyQt.Qt":
                problem(node, "qgis.PyQt.Qt is gone in Qt6: import Qt from qgis.PyQt.QtCore")
                continue
            if module == "qgis.PyQt" or module == "PyQt6":
                for alias in node.names:
                    if alias.name in QT_MODULES:
                        bindings[alias.asname or alias.name] = Binding("qt", alias.name, None)
                continue
            base = _binding_of_module(module)
            for alias in node.names:
                if alias.name == "resources_rc" or alias.name.endswith("_rc"):
                    problem(node, "compiled resources are gone in Qt6: load icons by file path")
                if alias.name in REMOVED_NAMES:
                    problem(node, REMOVED_NAMES[alias.name])
                if base is None or alias.name == "*":
                    continue
                local = alias.asname or alias.name
                if id(node) in fallback:
                    bindings.setdefault(local, Binding(base.kind, base.module, alias.name))
                    continue
                bindings[local] = Binding(base.kind, base.module, alias.name)
                scan.references.append(Reference(base.kind, base.module, [alias.name], where(node)))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "PyQt5":
                    problem(node, f"import qgis.PyQt modules, not {alias.name}")
                base = _binding_of_module(alias.name)
                if base is not None and alias.asname:
                    bindings[alias.asname] = base

    parents: dict[int, ast.AST] = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[id(child)] = parent

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "exec_":
            problem(node, "def exec_: PyQt6 calls exec(); name the method exec")
        if isinstance(node, ast.Name) and node.id == "qApp":
            problem(node, REMOVED_NAMES["qApp"])
        if isinstance(node, ast.Attribute):
            _attribute_rules(node, problem)
        if isinstance(node, ast.Call):
            _call_rules(node, problem)
        if isinstance(node, ast.Subscript):
            value, index = node.value, node.slice
            if (
                isinstance(value, ast.Attribute)
                and value.attr == "activated"
                and isinstance(index, ast.Name)
                and index.id == "str"
            ):
                problem(node, "activated[str] is gone in Qt6: use textActivated (or activated)")
        # The outermost attribute of a chain whose root is a Qt/QGIS name.
        if isinstance(node, ast.Attribute):
            parent = parents.get(id(node))
            if isinstance(parent, ast.Attribute) and parent.value is node:
                continue
            chain: list[str] = []
            inner: ast.AST = node
            while isinstance(inner, ast.Attribute):
                chain.insert(0, inner.attr)
                inner = inner.value
            if not isinstance(inner, ast.Name) or inner.id not in bindings:
                continue
            binding = bindings[inner.id]
            head = [binding.name] if binding.name else []
            if not head and not chain:
                continue
            scan.references.append(Reference(binding.kind, binding.module, head + chain, where(node)))
    return scan


def _attribute_rules(node: ast.Attribute, problem) -> None:
    if node.attr == "exec_":
        problem(node, "exec_() is gone in PyQt6: call exec() (PyQt5 has it too)")
    if isinstance(node.value, ast.Name) and (node.value.id, node.attr) in RENAMED_ENUMS:
        problem(
            node,
            f"{node.value.id}.{node.attr} is gone in Qt6: use {RENAMED_ENUMS[(node.value.id, node.attr)]}",
        )
    if node.attr == "width" and isinstance(node.value, ast.Call):
        func = node.value.func
        if (isinstance(func, ast.Attribute) and func.attr == "fontMetrics") or (
            isinstance(func, ast.Name) and func.id in ("QFontMetrics", "QFontMetricsF")
        ):
            problem(node, "QFontMetrics.width() is gone in Qt6: use horizontalAdvance()")
    if isinstance(node.value, ast.Name) and node.value.id == "QVariant" and node.attr == "Type":
        problem(node, "QVariant.Type.X does not exist: use QMetaType.Type.X")


def _call_rules(node: ast.Call, problem) -> None:
    func = node.func
    if isinstance(func, ast.Attribute):
        if func.attr == "desktop" and not node.args:
            problem(node, REMOVED_NAMES["QDesktopWidget"])
        if func.attr == "addAction" and len(node.args) >= 4:
            problem(
                node, "addAction with 4+ arguments changed in Qt6: create the QAction, then addAction(action)"
            )
    null_arg = len(node.args) == 1 and (
        isinstance(node.args[0], ast.Attribute)
        and isinstance(node.args[0].value, ast.Name)
        and node.args[0].value.id == "QVariant"
    )
    if isinstance(func, ast.Name) and func.id == "QVariant" and (not node.args or null_arg):
        problem(node, "QVariant() as a null value breaks on Qt6: use NULL from qgis.core")
    if isinstance(func, ast.Name) and func.id == "QDateTime" and len(node.args) == 8:
        problem(
            node,
            "QDateTime(y, m, d, h, min, s, ms, ts) is gone in Qt6: use QDateTime(QDate(...), QTime(...), ts)",
        )


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- resolving


def _is_enum_type(value: object) -> bool:
    """A Python enum (PyQt6, QGIS >= 3.30 scoped enums) or a sip enum type (PyQt5, QGIS 3.22)."""
    return isinstance(value, enum.EnumMeta) or type(value).__name__ == "enumtype"


def _enum_type_of(value: object) -> type | None:
    kind = type(value)
    return kind if _is_enum_type(kind) else None


def _enum_owner(owner: object, member: str) -> str | None:
    """The name of the enum inside ``owner`` that has ``member`` (to say how to scope it)."""
    for name in dir(owner):
        if name.startswith("_"):
            continue
        try:
            candidate = getattr(owner, name)
        except Exception:
            continue
        if _is_enum_type(candidate) and hasattr(candidate, member):
            return name
    return None


def _name_in(owner: object, value: object) -> str | None:
    """The attribute of ``owner`` that is ``value`` itself (the enum type a member belongs to)."""
    for name in dir(owner):
        try:
            if not name.startswith("_") and getattr(owner, name) is value:
                return name
        except Exception:
            continue
    return None


def resolve(kind: str, module_name: str, path: list[str]) -> str | None:
    """None when ``module.path`` resolves (and a QGIS enum value is scoped), else why not."""
    module = importlib.import_module(f"PyQt6.{module_name}" if kind == "qt" else f"qgis.{module_name}")
    value: object = module
    for i, attr in enumerate(path):
        previous = value
        try:
            value = getattr(value, attr)
        except AttributeError:
            return _missing(kind, module_name, previous, path[:i], attr)
        enum_type = _enum_type_of(value)
        if (
            kind == "qgis"
            and i > 0
            and enum_type is not None
            and previous is not enum_type
            and not _is_enum_type(previous)
        ):
            scope = _name_in(previous, enum_type) or enum_type.__name__.split(".")[-1]
            dotted = ".".join(path[:i])
            return f"{dotted}.{attr} is an unscoped QGIS enum value: write {dotted}.{scope}.{attr}"
    return None


def _missing(kind: str, module_name: str, owner: object, path: list[str], attr: str) -> str:
    dotted = ".".join([*path, attr])
    if kind == "qt":
        if not path:  # a class that is not in this module under Qt6
            home = next((m for m in QT_MODULES if m != module_name and _has(f"PyQt6.{m}", attr)), None)
            where = (
                f" (Qt6 has it in {home}: import it from qgis.PyQt.{home}, with the "
                f"qgis.PyQt.{module_name} import as the except-ImportError fallback for Qt5)"
                if home
                else ""
            )
            return f"{attr} is not in PyQt6.{module_name}{where}"
        scope = _enum_owner(owner, attr)
        if scope:
            return f"{dotted} does not exist in PyQt6 (unscoped enum): write {'.'.join(path)}.{scope}.{attr}"
        return f"{dotted} does not exist in PyQt6.{module_name}"
    return f"{dotted} does not exist in qgis.{module_name} of QGIS 3.22 (the oldest QGIS the plugin supports)"


def _has(module: str, name: str) -> bool:
    try:
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False


def resolve_all(refs: list[dict]) -> list[dict]:
    """``[{kind, module, path, where}]`` -> the ones that do not resolve, with ``problem``."""
    failed = []
    for ref in refs:
        problem = resolve(ref["kind"], ref["module"], ref["path"])
        if problem is not None:
            failed.append({**ref, "problem": problem})
    return failed


def _resolve_qt_in(python: str, refs: list[Reference]) -> list[dict]:
    """Resolve the Qt references with the PyQt6 venv's Python (this file, --resolve)."""
    payload = json.dumps([ref.__dict__ for ref in refs])
    proc = subprocess.run(
        [python, str(Path(__file__).resolve()), "--resolve"],
        input=payload,
        capture_output=True,
        text=True,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    if proc.returncode != 0:
        raise SystemExit(f"check_qt6: the PyQt6 resolver failed ({python}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def _files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        else:
            files.append(path)
    return files


def _order(line: str) -> tuple:
    """file, then line and column as numbers."""
    parts = line.split(":", 3)
    try:
        return (parts[0], int(parts[1]), int(parts[2]))
    except (IndexError, ValueError):
        return (line, 0, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: paligemma_qgis)")
    parser.add_argument("--pyqt6-python", default=str(DEFAULT_PYQT6), help="Python of the PyQt6 venv")
    parser.add_argument("--resolve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.resolve:  # inside the PyQt6 venv: references on stdin, failures on stdout
        print(json.dumps(resolve_all(json.load(sys.stdin))))
        return 0
    if not Path(args.pyqt6_python).is_file():
        print(
            f"check_qt6: no PyQt6 venv at {args.pyqt6_python}; run `make setup` (it installs PyQt6 there)",
            file=sys.stderr,
        )
        return 2
    root = Path.cwd().resolve()
    problems: list[str] = []
    qt_refs: list[Reference] = []
    qgis_refs: list[Reference] = []
    files = _files(args.paths or DEFAULT_PATHS)
    for path in files:
        scan = scan_file(path, root)
        problems += scan.problems
        for ref in scan.references:
            (qt_refs if ref.kind == "qt" else qgis_refs).append(ref)
    failed = _resolve_qt_in(args.pyqt6_python, qt_refs) if qt_refs else []
    if qgis_refs:
        failed += resolve_all([ref.__dict__ for ref in qgis_refs])
    problems += [f"{f['where']}: {f['problem']}" for f in failed]
    for line in sorted(set(problems), key=_order):
        print(line)
    print(
        f"check_qt6: {len(files)} files, {len(qt_refs)} Qt and {len(qgis_refs)} QGIS references, "
        f"{len(set(problems))} problem(s)",
        file=sys.stderr,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
