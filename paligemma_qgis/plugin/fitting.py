"""Dialogs that fit a 1366x768 laptop in every state: at most MAX_HEIGHT pixels tall.

A dialog's fields sit in a ``ScrollBody``: the dialog grows with them (rows shown, Advanced
opened, messages) up to MAX_HEIGHT, and past it the fields scroll instead of pushing the
buttons off the screen. QScrollArea's own size hint stops at 24 text lines, which would make
every dialog scroll: this one asks for what its fields need.
"""

from __future__ import annotations

from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

MAX_HEIGHT = 740  # 768 px of screen, less the window's title bar
MIN_BODY_HEIGHT = 160  # what the fields keep when messages take the rest


class ScrollBody(QScrollArea):
    """The fields of a dialog, in ``fields`` (a QVBoxLayout); they scroll past MAX_HEIGHT."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("paligemmaScrollBody")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        inner = QWidget()
        self.fields = QVBoxLayout(inner)
        self.fields.setContentsMargins(0, 0, 0, 0)
        self.setWidget(inner)

    def _bar_width(self) -> int:
        return self.verticalScrollBar().sizeHint().width()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = self.widget().sizeHint()
        frame = 2 * self.frameWidth()
        return QSize(hint.width() + self._bar_width() + frame, hint.height() + frame)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = self.widget().minimumSizeHint()
        height = min(MIN_BODY_HEIGHT, self.widget().sizeHint().height())
        return QSize(hint.width() + self._bar_width() + 2 * self.frameWidth(), height)

    def scrolls(self) -> bool:
        """Whether the fields are taller than the room they have now."""
        return self.verticalScrollBar().maximum() > 0
