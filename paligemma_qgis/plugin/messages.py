"""Where the plugin's background tasks report: the QGIS message bar, else the log panel.

Every item the plugin pushes is marked, so a new run can take the plugin's old messages
off the bar (``clear_messages``): QGIS shows the previous item again when the newest one
times out, and an old red error coming back after a success made a good run look failed.
Errors and successes stay until closed or until the next run.

A message bar item shows rich text in a box one line high (more scrolls behind small
arrows): an item here shows the first paragraph of its text in as many lines as it takes, up
to ``SHOWN_LINES`` (cut with an ellipsis beyond; ``SHOWN_CHARS`` before the bar is shown),
escaped (scene and file names are user data: ``<img src=…>`` in a name must not render), and
a Details… button opens the whole text (and the worker's output, when there is one) in a box
of its own. The dialogs' own bars use the same items (``push_item``).
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Callable, Sequence

from qgis.core import Qgis, QgsMessageLog
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QFont, QFontMetrics, QTextDocument
from qgis.PyQt.QtWidgets import QMessageBox, QPushButton, QTextBrowser, QWidget

LOG_TAG = "PaliGemma Water"
OURS = "paligemma_qgis_message"  # the Qt property that marks our message bar items
PLAIN = "paligemma_qgis_text"  # the Qt property holding an item's whole text, unescaped
INFO_SECONDS = 10
SHOWN_CHARS = 150  # what a bar item shows of its text before the bar is shown (its width unknown)
SHOWN_LINES = 3  # lines a bar item shows; the rest of a longer text is behind Details…
# What QGIS itself pushes when a long task ends (QGIS < 3.26 has no QgsTask.Silent flag).
QGIS_TASK_NOTICES = ("Task complete", "Task failed")
# Open Details boxes, kept referenced while they are shown (non-modal).
_DETAILS: list[QMessageBox] = []

Buttons = Sequence[tuple[str, Callable[[], object]]]


def message_bar(iface) -> QgsMessageBar | None:
    """The message bar of ``iface``, or of QGIS's own iface; None without one (qgis_process)."""
    if iface is None:
        try:
            from qgis.utils import iface as global_iface
        except ImportError:  # pragma: no cover - qgis.utils always exists in QGIS
            global_iface = None
        iface = global_iface
    return iface.messageBar() if iface is not None else None


def shown_text(text: str, limit: int = SHOWN_CHARS) -> tuple[str, bool]:
    """(what an item shows of ``text``: its first line, cut at a word before ``limit``; cut?)."""
    text = text.strip()
    first = text.split("\n", 1)[0].rstrip()
    if len(first) > limit:
        cut = first[: limit - 1]
        space = cut.rfind(" ")
        first = (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"
    return first, first != text


def rich(text: str) -> str:
    """``text`` as rich text that shows it literally (a message bar renders HTML)."""
    return "<span>" + html.escape(text, quote=False) + "</span>"


def _room(bar: QgsMessageBar, font: QFont, buttons: Buttons) -> int | None:
    """Pixels the text box of a new item has on ``bar`` (None: not known, nothing shown yet).

    An empty bar hides itself: then its parent's width (QGIS's map area) is what it will have."""
    width = bar.width() if bar.isVisible() else 0
    parent = bar.parentWidget()
    if not width and parent is not None and parent.isVisible():
        width = parent.width()
    if width < 200:
        return None
    plain = QFontMetrics(font).horizontalAdvance
    # icon, close button and margins; Details… and the other buttons
    reserved = 150 + plain("Details…") + 40 + sum(plain(name) + 40 for name, _ in buttons)
    return max(160, width - reserved)


def _height(font: QFont, width: int, margin: float, title: str, text: str) -> float:
    """The height ``text`` (after the bold title, as QgsMessageBarItem shows it) takes at ``width``."""
    document = QTextDocument()
    document.setDefaultFont(font)
    document.setDocumentMargin(margin)
    document.setTextWidth(width)
    document.setHtml((f"<b>{html.escape(title, quote=False)}: </b>" if title else "") + rich(text))
    return document.size().height()


def fit_lines(
    font: QFont, width: int, margin: float, title: str, text: str, lines: int = SHOWN_LINES
) -> tuple[str, bool, float]:
    """(what ``lines`` lines of ``width`` show of ``text``'s first line, cut?, its height)."""
    first = text.strip().split("\n", 1)[0]
    limit = lines * QFontMetrics(font).lineSpacing() + 2 * margin + 1
    if _height(font, width, margin, title, first) > limit:
        words = first.split(" ")
        low, high = 0, len(words)
        while low < high:  # the most words that fit, and an ellipsis
            middle = (low + high + 1) // 2
            candidate = " ".join(words[:middle]).rstrip(" ,;:") + "…"
            if _height(font, width, margin, title, candidate) <= limit:
                low = middle
            else:
                high = middle - 1
        first = " ".join(words[:low]).rstrip(" ,;:") + "…"
    return first, first != text.strip(), _height(font, width, margin, title, first)


def push_item(
    bar: QgsMessageBar,
    title: str,
    text: str,
    level,
    duration: int = 0,
    details: str | None = None,
    buttons: Buttons = (),
):
    """Push one of our items to ``bar``: the text's first line, escaped, cut to one line of the bar,
    a Details… button when there is more to read (the whole text, ``details``), and ``buttons``
    (label, action)."""
    item = QgsMessageBar.createMessage(html.escape(title, quote=False), "", bar)
    browser = item.findChild(QTextBrowser)  # what shows the text, in its own font
    room = _room(bar, browser.font(), buttons) if browser is not None else None
    height = None
    if room is None:  # not shown yet: a line's worth of characters
        shown, cut = shown_text(text)
    else:
        margin = browser.document().documentMargin()
        shown, cut, height = fit_lines(browser.font(), room, margin, title, text)
    item.setText(rich(shown))
    item.setProperty(OURS, True)
    item.setProperty(PLAIN, text)
    for label, action in buttons:
        button = QPushButton(label)
        button.clicked.connect(lambda _checked=False, act=action: act())
        item.layout().addWidget(button)
    if cut or details:
        button = QPushButton("Details…")
        button.setObjectName("paligemmaDetails")
        button.clicked.connect(lambda: show_details(bar.window(), title, text, details or ""))
        item.layout().addWidget(button)
    if height is not None:  # up to SHOWN_LINES lines, as many as the text takes: no scroll arrows
        # QgsMessageBarItem holds its text box to one line with a style sheet (max-height: 1.75em);
        # a later rule of the same sheet wins. Its margin-top (0.25em) comes on top.
        pixels = int(height + 0.3 * QFontMetrics(browser.font()).height()) + 2 * browser.frameWidth() + 2
        rule = f"QTextEdit {{ max-height: {pixels}px; min-height: {pixels}px; }}"
        browser.setStyleSheet(f"{browser.styleSheet()} {rule}")
    bar.pushWidget(item, level, duration)
    return item


def push_message(
    iface, text: str, level, details: str | None = None, title: str = LOG_TAG, buttons: Buttons = ()
):
    """Show ``text`` in the message bar of ``iface`` (the log panel without one); returns the item.

    ``details``: the full story behind it, behind a Details… button.
    """
    bar = message_bar(iface)
    if bar is None:
        QgsMessageLog.logMessage(text + (f"\n{details}" if details else ""), LOG_TAG, level)
        return None
    stays = level in (Qgis.MessageLevel.Critical, Qgis.MessageLevel.Warning, Qgis.MessageLevel.Success)
    return push_item(bar, title, text, level, 0 if stays else INFO_SECONDS, details, buttons)


def item_text(item) -> str:
    """The whole text of a message bar item: ours as given, another's without its markup."""
    with contextlib.suppress(RuntimeError):
        plain = item.property(PLAIN)
        if isinstance(plain, str):
            return plain
        return html.unescape(re.sub(r"<[^>]+>", "", item.text()))
    return ""


def bar_texts(bar: QgsMessageBar | None, ours_only: bool = False) -> list[str]:
    """Texts of the items on ``bar``, newest first (QgsMessageBar.items() is; tests, diagnostics)."""
    if bar is None:
        return []
    return [item_text(i) for i in bar.items() if not ours_only or i.property(OURS)]


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


def drop_task_notices(iface, description: str) -> int:
    """Take QGIS's own "Task complete" / "Task failed" item for our task ``description`` off the bar.

    QGIS before 3.26 pushes one when a task that took a while ends (its system notification,
    on a desktop without a tray): for a cancel it says "Task failed", and a setup's "Task
    complete" stayed on the bar while the run it started went on. Our own message says what
    happened. Returns how many were removed.
    """
    bar = message_bar(iface)
    if bar is None:
        return 0
    removed = 0
    for item in list(bar.items()):
        with contextlib.suppress(RuntimeError):
            if item.property(OURS) or item.title().rstrip(": ") not in QGIS_TASK_NOTICES:
                continue
            if item_text(item).strip() == description.strip():
                bar.popWidget(item)
                removed += 1
    return removed


def plugin_messages(iface) -> list[str]:
    """Texts of the plugin's messages now on the bar, newest first (tests, diagnostics)."""
    return bar_texts(message_bar(iface), ours_only=True)


def show_details(parent: QWidget | None, title: str, text: str, details: str) -> QMessageBox:
    """A non-modal box with the whole ``text`` and, behind "Show Details…", ``details``."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Close, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)  # names are user data: never rendered as HTML
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if details:
        box.setDetailedText(details)
    box.setObjectName("paligemmaDetailsBox")
    _DETAILS.append(box)
    box.finished.connect(lambda _result: _DETAILS.remove(box) if box in _DETAILS else None)
    box.open()
    return box
