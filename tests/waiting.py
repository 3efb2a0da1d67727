"""Waiting in tests: for a QgsTask to finish (pumping Qt events) and for a process to be gone."""

from __future__ import annotations

import os
import signal
import time


def wait_for_task(task, timeout: float = 120.0) -> None:
    """Pump Qt events until ``task.finished()`` has run on the main thread (WorkerTask sets finished_called)."""
    from qgis.PyQt.QtCore import QCoreApplication

    deadline = time.monotonic() + timeout
    while not task.finished_called:
        QCoreApplication.processEvents()
        time.sleep(0.02)
        assert time.monotonic() < deadline, f"task still running after {timeout} s"
    QCoreApplication.processEvents()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def pid_gone(pid: int, timeout: float = 5.0) -> bool:
    """True when ``pid`` ends within ``timeout``; else it is killed (never left behind) and False."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return False
        time.sleep(0.05)
    return True


def wait_until(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    """Pump Qt events until ``predicate()`` is true (a dialog's background check, a box opening)."""
    from qgis.PyQt.QtCore import QCoreApplication

    deadline = time.monotonic() + timeout
    while not predicate():
        QCoreApplication.processEvents()
        time.sleep(0.02)
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
    QCoreApplication.processEvents()
