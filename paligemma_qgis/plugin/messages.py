"""Where the plugin's background tasks report: the QGIS message bar, else the log panel."""

from __future__ import annotations

from qgis.core import Qgis, QgsMessageLog

LOG_TAG = "PaliGemma Water"


def push_message(iface, text: str, level) -> None:
    """Show ``text`` in the message bar of ``iface`` (or QGIS's own); the log panel without one.

    Errors stay until closed, other messages go after 8 seconds.
    """
    if iface is None:
        try:
            from qgis.utils import iface as global_iface
        except ImportError:  # pragma: no cover - qgis.utils always exists in QGIS
            global_iface = None
        iface = global_iface
    if iface is not None:
        iface.messageBar().pushMessage(
            LOG_TAG, text, level=level, duration=0 if level == Qgis.MessageLevel.Critical else 8
        )
    else:
        QgsMessageLog.logMessage(text, LOG_TAG, level)
