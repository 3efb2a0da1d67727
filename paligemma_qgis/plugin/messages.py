"""Where the plugin's background tasks report: the QGIS message bar, else the log panel.

Every item the plugin pushes is marked, so a new run can take the plugin's old messages
off the bar (``clear_messages``): QGIS shows the previous item again when the newest one
times out, and an old red error coming back after a success made a good run look failed.
Errors and successes stay until closed or until the next run; an error can carry a
Details… button with the full text (worker output, command) for a bug report.
"""

from __future__ import annotations

import contextlib

from qgis.core import Qgis, QgsMessageLog
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtWidgets import QMessageBox, QPushButton, QWidget

LOG_TAG = "PaliGemma Water"
OURS = "paligemma_qgis_message"  # the Qt property that marks our message bar items
INFO_SECONDS = 10
# Open Details boxes, kept referenced while they are shown (non-modal).
_DETAILS: list[QMessageBox] = []


def message_bar(iface) -> QgsMessageBar | None:
    """The message bar of ``iface``, or of QGIS's own iface; None without one (qgis_process)."""
    if iface is None:
        try:
            from qgis.utils import iface as global_iface
        except ImportError:  # pragma: no cover - qgis.utils always exists in QGIS
            global_iface = None
        iface = global_iface
    return iface.messageBar() if iface is not None else None


def push_message(iface, text: str, level, details: str | None = None, title: str = LOG_TAG):
    """Show ``text`` in the message bar of ``iface`` (the log panel without one); returns the item.

    ``details``: the full story behind it, behind a Details… button.
    """
    bar = message_bar(iface)
    if bar is None:
        QgsMessageLog.logMessage(text + (f"\n{details}" if details else ""), LOG_TAG, level)
        return None
    item = QgsMessageBar.createMessage(title, text, bar)
    if details:
        button = QPushButton("Details…")
        button.setObjectName("paligemmaDetails")
        button.clicked.connect(lambda: show_details(bar.window(), title, text, details))
        item.layout().addWidget(button)
    item.setProperty(OURS, True)
    stays = level in (Qgis.MessageLevel.Critical, Qgis.MessageLevel.Warning, Qgis.MessageLevel.Success)
    bar.pushWidget(item, level, 0 if stays else INFO_SECONDS)
    return item


def clear_messages(iface) -> int:
    """Take the plugin's earlier messages off the bar (a new run starts); returns how many."""
    bar = message_bar(iface)
    if bar is None:
        return 0
    removed = 0
    for item in list(bar.items()):
        with contextlib.suppress(RuntimeError):  # closed by the user meanwhile
            if item.property(OURS):
                bar.popWidget(item)
                removed += 1
    return removed


def plugin_messages(iface) -> list[str]:
    """Texts of the plugin's messages now on the bar, newest first (tests, diagnostics)."""
    bar = message_bar(iface)
    if bar is None:
        return []
    return [item.text() for item in reversed(bar.items()) if item.property(OURS)]


def show_details(parent: QWidget | None, title: str, text: str, details: str) -> QMessageBox:
    """A non-modal box with ``text`` and, behind "Show Details…", the full ``details``."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Close, parent)
    box.setDetailedText(details)
    box.setObjectName("paligemmaDetailsBox")
    _DETAILS.append(box)
    box.finished.connect(lambda _result: _DETAILS.remove(box) if box in _DETAILS else None)
    box.open()
    return box
