"""The Worker setup page's check when the worker Python hangs (a broken GPU driver), in real QGIS.

The "Python" is a script that ignores its arguments and sleeps: the page must stop it after
CHECK_TIMEOUT_S (lowered here), say so with the Python's path and the likely cause, and keep
that message whatever the killed process reports afterwards.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from qgis.PyQt.QtCore import QCoreApplication
from waiting import pid_gone

from paligemma_qgis.plugin import setup_check
from paligemma_qgis.plugin.setup_check import SetupCheckDialog, run_check

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="shell-script stand-ins for Python"),
]

HANGING = "import sys, time; print('importing torch', file=sys.stderr, flush=True); time.sleep(30)"
ANSWERING = '{"python": "/opt/fake/python", "python_version": "3.12.0", "packages": {}, "ready": {}}'


def _script(tmp_path: Path, body: str) -> Path:
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\n{body}\n")
    python.chmod(0o755)
    return python


def _hanging_python(tmp_path: Path) -> Path:
    return _script(tmp_path, f'exec "{sys.executable}" -c "{HANGING}"')


def _pump(seconds: float, until=lambda: False) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        QCoreApplication.processEvents()
        time.sleep(0.02)


@pytest.fixture
def errors():
    """Exceptions from Qt slots (QGIS's hook would show them to the user)."""
    caught: list[BaseException] = []
    hook = sys.excepthook
    sys.excepthook = lambda *exc: caught.append(exc[1])
    yield caught
    sys.excepthook = hook


def test_a_hanging_check_is_stopped_and_explained(qgis_iface, tmp_path, monkeypatch, errors):
    monkeypatch.setattr(setup_check, "CHECK_TIMEOUT_S", 1.0)
    python = _hanging_python(tmp_path)
    dialog = SetupCheckDialog()
    dialog.python_widget.setFilePath(str(python))
    dialog.show()
    started = time.monotonic()
    dialog.start_check()
    pid = int(dialog.process.processId())
    _pump(10, until=lambda: dialog.result is not None)
    elapsed = time.monotonic() - started
    assert dialog.result is not None, "the check was not stopped"
    assert 0.9 < elapsed < 5, f"stopped after {elapsed:.1f} s, the timeout is 1 s"
    assert pid_gone(pid, timeout=1.0), "the hanging check kept running"
    report = dialog.report.toPlainText()
    assert "did not finish in 1 s" in report
    assert str(python) in report  # which Python hung
    assert "GPU" in report and "driver" in report and "torch" in report  # the likely cause
    assert "importing torch" in report  # what it printed before it hung
    assert dialog.check_button.isEnabled() and dialog.process is None
    _pump(1.5)  # anything the killed process still signals must not replace the message
    assert dialog.report.toPlainText() == report
    assert errors == []
    dialog.reject()
    dialog.deleteLater()


def test_closing_the_page_before_the_timeout(qgis_iface, tmp_path, monkeypatch, errors):
    """The timer must not fire on a closed (deleted) page, and the check must not outlive it."""
    import sip

    monkeypatch.setattr(setup_check, "CHECK_TIMEOUT_S", 1.0)
    dialog = SetupCheckDialog()
    dialog.python_widget.setFilePath(str(_hanging_python(tmp_path)))
    dialog.show()
    dialog.start_check()
    pid = int(dialog.process.processId())
    _pump(0.3)
    dialog.reject()
    sip.delete(dialog)
    _pump(2.0)  # past the timeout
    assert errors == []
    assert pid_gone(pid, timeout=1.0), "the check kept running after its page was closed"


def test_a_check_that_answers_in_time_keeps_its_result(qgis_iface, tmp_path, monkeypatch, errors):
    monkeypatch.setattr(setup_check, "CHECK_TIMEOUT_S", 1.0)
    dialog = SetupCheckDialog()
    dialog.python_widget.setFilePath(str(_script(tmp_path, f"echo '{ANSWERING}'")))
    dialog.start_check()
    _pump(10, until=lambda: dialog.result is not None)
    assert dialog.result is not None and dialog.result.get("python") == "/opt/fake/python"
    _pump(1.5)  # past the timeout
    assert dialog.result.get("python") == "/opt/fake/python"
    assert "did not finish" not in dialog.report.toPlainText()
    assert errors == []
    dialog.deleteLater()


def test_a_new_check_replaces_a_hanging_one(qgis_iface, tmp_path, monkeypatch, errors):
    """Checking again (or after a setup task) stops the hanging check: its timeout must not
    report over the new result."""
    monkeypatch.setattr(setup_check, "CHECK_TIMEOUT_S", 1.0)
    hanging, answering = tmp_path / "hanging", tmp_path / "answering"
    hanging.mkdir()
    answering.mkdir()
    dialog = SetupCheckDialog()
    dialog.python_widget.setFilePath(str(_hanging_python(hanging)))
    dialog.start_check()
    pid = int(dialog.process.processId())
    _pump(0.5)
    dialog.python_widget.setFilePath(str(_script(answering, f"echo '{ANSWERING}'")))
    dialog.start_check()
    assert pid_gone(pid, timeout=1.0), "the first check kept running"
    _pump(2.0)
    assert dialog.result is not None and dialog.result.get("python") == "/opt/fake/python"
    assert errors == []
    dialog.deleteLater()


def test_run_check_times_out_with_the_same_message(tmp_path):
    python = _hanging_python(tmp_path)
    started = time.monotonic()
    check = run_check(python=str(python), timeout=1)
    assert time.monotonic() - started < 10
    assert "did not finish in 1 s" in check["error"] and str(python) in check["error"]
    assert "driver" in check["hint"]
