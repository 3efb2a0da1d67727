"""scripts/check_qt6.py, the Qt6 part of `make lint`: the plugin passes it, and a Qt6 break fails it.

The check resolves Qt names against the real PyQt6 in .venv-qt6 (made by `make setup`) and QGIS
names against this machine's QGIS, so these tests run the script as `make lint` does.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "scripts" / "check_qt6.py"
PYQT6_PYTHON = REPO / ".venv-qt6" / "bin" / "python"

pytestmark = pytest.mark.skipif(
    not PYQT6_PYTHON.is_file(), reason=f"no PyQt6 venv at {PYQT6_PYTHON} (run make setup)"
)


def _check(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), "--pyqt6-python", str(PYQT6_PYTHON), *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def _module(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "plugin_module.py"
    path.write_text(textwrap.dedent(source))
    return path


def test_the_plugin_passes():
    run = _check(REPO / "paligemma_qgis")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 problem(s)" in run.stderr
    # It did look at the plugin: dozens of Qt and QGIS names were resolved.
    qt, qgis = (int(n) for n in run.stderr.split("files, ")[1].split(" QGIS")[0].split(" Qt and "))
    assert qt > 30 and qgis > 100


def test_unscoped_qt_enum_fails_with_the_scoped_spelling(tmp_path):
    path = _module(
        tmp_path,
        """
        from qgis.PyQt.QtWidgets import QDialogButtonBox

        box = QDialogButtonBox()
        box.addButton("Run", QDialogButtonBox.AcceptRole)
        box.addButton("Help", QDialogButtonBox.ButtonRole.HelpRole)
        """,
    )
    run = _check(path)
    assert run.returncode == 1
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1, run.stdout  # the scoped HelpRole is fine
    assert ":5:" in lines[0] and "QDialogButtonBox.ButtonRole.AcceptRole" in lines[0]


def test_exec_underscore_fails(tmp_path):
    path = _module(
        tmp_path,
        """
        from qgis.PyQt.QtWidgets import QDialog

        class Dialog(QDialog):
            def exec_(self):
                return super().exec()

        Dialog().exec_()
        """,
    )
    run = _check(path)
    assert run.returncode == 1
    assert ":5:" in run.stdout and "def exec_" in run.stdout
    assert ":8:" in run.stdout and "exec_() is gone in PyQt6" in run.stdout


def test_unscoped_qgis_enum_fails(tmp_path):
    path = _module(
        tmp_path,
        """
        from qgis.core import Qgis, QgsTask

        level = Qgis.Warning
        scoped = Qgis.MessageLevel.Warning
        flags = QgsTask.CanCancel
        """,
    )
    run = _check(path)
    assert run.returncode == 1
    assert "Qgis.MessageLevel.Warning" in run.stdout and ":4:" in run.stdout
    assert "QgsTask.Flag.CanCancel" in run.stdout and ":6:" in run.stdout
    assert ":5:" not in run.stdout


def test_moved_class_needs_the_qt6_module_with_a_qt5_fallback(tmp_path):
    plain = _module(tmp_path, "from qgis.PyQt.QtWidgets import QAction\n")
    run = _check(plain)
    assert run.returncode == 1 and "QAction is not in PyQt6.QtWidgets" in run.stdout
    guarded = tmp_path / "guarded.py"
    guarded.write_text(
        "try:\n"
        "    from qgis.PyQt.QtGui import QAction\n"
        "except ImportError:\n"
        "    from qgis.PyQt.QtWidgets import QAction\n"
        "action = QAction('x')\n"
        "action.setMenuRole(QAction.MenuRole.NoRole)\n"
    )
    run = _check(guarded)
    assert run.returncode == 0, run.stdout + run.stderr


def test_migration_script_rules(tmp_path):
    path = _module(
        tmp_path,
        """
        from PyQt5.QtCore import QVariant
        from qgis.PyQt.QtCore import QRegExp, Qt
        from qgis.PyQt.QtWidgets import QApplication

        button = Qt.MidButton
        width = QApplication.fontMetrics().width("x")
        screen = QApplication.desktop()
        """,
    )
    run = _check(path)
    assert run.returncode == 1
    for expected in ("not PyQt5.QtCore", "QRegExp is gone", "Qt.MouseButton.MiddleButton",
                     "horizontalAdvance", "QDesktopWidget is gone"):  # fmt: skip
        assert expected in run.stdout, (expected, run.stdout)


def test_missing_pyqt6_venv_is_a_clear_error(tmp_path):
    run = subprocess.run(
        [sys.executable, str(CHECK), "--pyqt6-python", str(tmp_path / "nope" / "python")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 2
    assert "make setup" in run.stderr
